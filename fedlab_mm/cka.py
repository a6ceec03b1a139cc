"""Centered kernel alignment (CKA): how similar two representations of the same inputs are.

Kornblith et al., "Similarity of Neural Network Representations Revisited" (ICML 2019).
For representations ``X (n, p1)`` and ``Y (n, p2)`` of the same ``n`` inputs, CKA compares
their sample-by-sample similarity structures: 1 when one is a rotation and isotropic scaling
of the other (plus a shift), near 0 when unrelated. Everything runs in float64.

- :func:`linear_cka`: feature-space form ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``
  or, identically, the Gram form ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with
  ``K = X X^T``; ``debiased=True`` uses Song et al.'s (2007) unbiased HSIC, because the plain
  estimate is biased upwards when ``n`` is small next to the width (roughly ``p / (n + p)`` for
  independent features).
- :func:`rbf_cka`: the same with Gaussian kernels, bandwidth a fraction of the median distance.
  The median is taken over the ``n (n - 1)`` distances between distinct samples; Kornblith's
  demo code takes it over all ``n^2`` entries, the zero diagonal included, which gives a
  slightly smaller bandwidth (over 20 random pairs of related representations, the two CKA
  values were at most 6e-3 apart at n = 20 and 8e-4 at n = 100). The kit keeps the
  off-diagonal median: a sample's distance to itself says nothing about the data's scale.
- :func:`layerwise_cka`: CKA between every pair of layers of two models on the same inputs.

``normalize_rows=True`` on both scales each sample's representation to unit L2 norm before
anything else, as FedMVP's ``cka_similarity`` does; it makes CKA blind to per-sample norms.
"""

from __future__ import annotations

import pandas as pd
import torch

__all__ = ["linear_cka", "rbf_cka", "hsic", "layerwise_cka", "FORMS"]

FORMS = ("feature", "gram")
EPS = 1e-12


def _as2d(x: torch.Tensor, name: str, normalize_rows: bool = False) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 2 or len(x) < 2:
        raise ValueError(f"{name} must be (n, ...) with n >= 2 samples, got shape {tuple(x.shape)}")
    x = x.reshape(len(x), -1).double()
    return torch.nn.functional.normalize(x, dim=1) if normalize_rows else x


def _centre_gram(k: torch.Tensor) -> torch.Tensor:
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def hsic(k: torch.Tensor, l: torch.Tensor, debiased: bool = False) -> torch.Tensor:  # noqa: E741
    """HSIC between two ``(n, n)`` Gram matrices: ``tr(K H L H) / (n - 1)^2``, or with
    ``debiased=True`` Song et al.'s unbiased estimator (needs ``n >= 4``)."""
    n = len(k)
    if not debiased:
        return (_centre_gram(k) * _centre_gram(l)).sum() / (n - 1) ** 2
    if n < 4:
        raise ValueError(f"the debiased estimator needs n >= 4 samples, got {n}")
    k, l = k.clone(), l.clone()  # noqa: E741
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones = torch.ones(n, dtype=k.dtype)
    term = (k * l).sum() + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
    term = term - 2.0 / (n - 2) * (ones @ k @ l @ ones)
    return term / (n * (n - 3))


def _cka_from_grams(k, l, debiased):  # noqa: E741
    num = hsic(k, l, debiased)
    den = torch.sqrt((hsic(k, k, debiased) * hsic(l, l, debiased)).clamp_min(0.0))
    return num / (den + EPS)


def linear_cka(
    x, y, form: str = "feature", debiased: bool = False, normalize_rows: bool = False
) -> torch.Tensor:
    """Linear CKA between ``x (n, ...)`` and ``y (n, ...)`` (flattened per sample).

    Parameters
    ----------
    form : {"feature", "gram"}
        Same value; ``"feature"`` is cheaper when the widths are below ``n``.
    debiased : bool
        Unbiased HSIC (Gram form). Can be slightly negative for independent features.
    normalize_rows : bool
        Scale each sample to unit L2 norm first (FedMVP's ``cka_similarity``).

    Returns
    -------
    Tensor
        A float64 scalar, 0-dimensional; differentiable.

    Examples
    --------
    >>> x = torch.randn(100, 8)
    >>> float(linear_cka(x, 3 * x + 1))   # doctest: +SKIP
    1.0
    """
    x, y = _as2d(x, "x", normalize_rows), _as2d(y, "y", normalize_rows)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same samples: {len(x)} vs {len(y)} rows")
    if form not in FORMS:
        raise ValueError(f"form={form!r} must be one of {FORMS}")
    if debiased or form == "gram":
        return _cka_from_grams(x @ x.T, y @ y.T, debiased)
    xc, yc = x - x.mean(0), y - y.mean(0)
    cross = (yc.T @ xc).pow(2).sum()
    return cross / ((xc.T @ xc).norm() * (yc.T @ yc).norm() + EPS)


def _rbf(x: torch.Tensor, fraction: float) -> torch.Tensor:
    sq = torch.cdist(x, x).pow(2)
    off = sq[~torch.eye(len(x), dtype=torch.bool)]
    sigma2 = (fraction**2) * off.sqrt().median().pow(2).clamp_min(EPS)
    return torch.exp(-sq / (2 * sigma2))


def rbf_cka(
    x, y, fraction: float = 0.5, debiased: bool = False, normalize_rows: bool = False
) -> torch.Tensor:
    """CKA with Gaussian kernels, bandwidth ``fraction`` times the median distance between
    distinct samples (the zero diagonal left out; see the module docstring)."""
    if not fraction > 0:
        raise ValueError(f"fraction={fraction} must be > 0")
    x, y = _as2d(x, "x", normalize_rows), _as2d(y, "y", normalize_rows)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same samples: {len(x)} vs {len(y)} rows")
    return _cka_from_grams(_rbf(x, fraction), _rbf(y, fraction), debiased)


@torch.no_grad()
def _layer_outputs(model, inputs, present, layers) -> dict:
    outs, hooks = {}, []
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules:
            raise ValueError(f"layer {name!r} is not in the model; it has {list(modules)[1:]}")
        hooks.append(
            modules[name].register_forward_hook(
                lambda _m, _i, out, name=name: outs.__setitem__(name, out)
            )
        )
    try:
        model.eval()
        model(inputs, present)
    finally:
        for h in hooks:
            h.remove()
    return outs


def layerwise_cka(model_a, model_b, inputs: dict, layers: list[str], present=None):
    """Linear CKA between every layer of ``model_a`` and every layer of ``model_b`` on the
    same ``inputs``: a ``DataFrame`` (rows: layers of a, columns: layers of b)."""
    outs_a = _layer_outputs(model_a, inputs, present, layers)
    outs_b = _layer_outputs(model_b, inputs, present, layers)
    table = {lb: {la: float(linear_cka(outs_a[la], outs_b[lb])) for la in layers} for lb in layers}
    return pd.DataFrame(table).loc[layers, layers]
