"""The pretrained base of FedMosaic's model family: an MLP over the frozen public image
tower's 64-d features, trained once on the public digits and cached on disk.

:data:`SIZE_DIMS` names the three sizes (width, depth); :mod:`.model` builds them."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .. import pretrained
from ..data import cached, public_digits

__all__ = ["FAMILIES", "IN_DIM", "SIZE_DIMS", "base_layers", "forward_base", "grow", "loaded_base"]


IN_DIM = pretrained.TOWER_WIDTH  # 64: the public tower's features
#: The three sizes of the family: name -> (width, depth).
SIZE_DIMS = {"small": (32, 2), "medium": (64, 3), "large": (128, 4)}
#: How a family's sizes are pretrained: ``independent`` (each from its own random start) or
#: ``grown`` (each size grown from the next smaller one, then fine-tuned: :func:`grow`), so
#: that the sizes share a representation as a real model family does.
FAMILIES = ("independent", "grown")
_GROW_STEPS, _GROW_LR = 300, 1e-3


def base_layers(width: int, depth: int, num_classes: int = 10) -> tuple[list[nn.Linear], nn.Linear]:
    """Fresh hidden layers (``IN_DIM`` -> ``width``, ``depth`` of them) and a head."""
    dims = [IN_DIM] + [width] * depth
    return [nn.Linear(dims[i], dims[i + 1]) for i in range(depth)], nn.Linear(width, num_classes)


def forward_base(layers, x: torch.Tensor, record: list | None = None, head=None):
    """Hidden layers with ReLU (then ``head`` without, if given); ``record`` collects each
    layer's (input, output)."""
    for layer in [*layers, head] if head is not None else layers:
        out = layer(x)
        if record is not None:
            record.append((x, out))
        x = out if layer is head else torch.relu(out)
    return x


_PRETRAIN_STEPS = 300


@lru_cache(maxsize=8)
def _pretrained(width: int, depth: int, family: str = "independent") -> dict:
    """The base MLP of one size, trained on the public digits' tower features (seeded).

    Trained once per machine: the weights are kept in :func:`fedlab_mm.config.cache_dir`
    (one safetensors file per size, keyed by the recipe and the torch version), so test
    workers, notebook kernels and grid workers load them instead of training again. A
    ``grown`` size is grown from the next smaller one of :data:`SIZE_DIMS` (:func:`grow`)
    and fine-tuned; the smallest is the same in both families.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} must be one of {FAMILIES}")
    dims = list(SIZE_DIMS.values())
    if family == "grown" and (width, depth) != dims[0]:
        if (width, depth) not in dims:
            raise ValueError(f"a grown family has the sizes {dims}; got {(width, depth)}")
        smaller = dims[dims.index((width, depth)) - 1]
        params = {"width": width, "depth": depth, "grown_from": list(smaller),
                  "steps": _GROW_STEPS, "lr": _GROW_LR, "seed": 0, "base_steps": _PRETRAIN_STEPS,
                  "torch": torch.__version__}  # fmt: skip
        start = _pretrained(*smaller, family)

        def train():
            return _train_base(width, depth, grow(start, width, depth))

        flat = cached("hetero-base-grown", params, train, cache=True)
    else:
        params = {"width": width, "depth": depth, "steps": _PRETRAIN_STEPS, "lr": 3e-3,
                  "seed": 0, "torch": torch.__version__}  # fmt: skip
        flat = cached("hetero-base", params, lambda: _train_base(width, depth), cache=True)
    return {
        "layers": [{k: flat[f"layers.{i}.{k}"] for k in ("weight", "bias")} for i in range(depth)],
        "head": {k: flat[f"head.{k}"] for k in ("weight", "bias")},
    }


def grow(state: dict, width: int, depth: int, seed: int = 0) -> dict:
    """A base of ``width`` x ``depth`` that computes exactly what ``state`` (a smaller base, as
    :func:`_pretrained` returns it) computes: its units copied into the first ones of each
    layer, the new units' weights near zero (std 1e-3) and their biases zero, each extra
    layer the identity on the old units (a ReLU keeps its non-negative input as it is), the
    head reading the old units only. The new units then learn in fine-tuning."""
    old_depth, old_width = len(state["layers"]), state["layers"][0]["weight"].shape[0]
    if width < old_width or depth < old_depth:
        raise ValueError(f"cannot grow {old_width}x{old_depth} into {width}x{depth}")
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i in range(depth):
        fan_in = IN_DIM if i == 0 else width
        weight, bias = 1e-3 * torch.randn(width, fan_in, generator=gen), torch.zeros(width)
        if i < old_depth:
            w, b = state["layers"][i]["weight"], state["layers"][i]["bias"]
            weight[: w.shape[0], : w.shape[1]], bias[: b.shape[0]] = w, b
        else:
            weight[:old_width, :old_width] = torch.eye(old_width)
        layers.append({"weight": weight, "bias": bias})
    head = 1e-3 * torch.randn(state["head"]["weight"].shape[0], width, generator=gen)
    head[:, :old_width] = state["head"]["weight"]
    return {"layers": layers, "head": {"weight": head, "bias": state["head"]["bias"].clone()}}


def _train_base(width: int, depth: int, start: dict | None = None) -> dict[str, torch.Tensor]:
    """Train one size's base MLP (from a random start, or fine-tune ``start``: a grown base);
    its weights as a flat ``{"layers.0.weight": ...}`` dict."""
    pub = public_digits()
    x, y = pretrained.image_features(pub.modalities["image"]), pub.y
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(0)
        layers, head = base_layers(width, depth)
        if start is not None:
            for layer, s in zip(layers, start["layers"]):
                layer.load_state_dict(s)
            head.load_state_dict(start["head"])
        params = [p for m in [*layers, head] for p in m.parameters()]
        lr, steps = (3e-3, _PRETRAIN_STEPS) if start is None else (_GROW_LR, _GROW_STEPS)
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(steps):
            loss = F.cross_entropy(head(forward_base(layers, x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    named = [(f"layers.{i}", m) for i, m in enumerate(layers)] + [("head", head)]
    return {
        f"{name}.{k}": v.detach().clone() for name, m in named for k, v in m.state_dict().items()
    }


def loaded_base(spec):
    """The pretrained hidden layers and head of ``spec``'s size (fresh modules each call)."""
    layers, head = base_layers(spec.width, spec.depth, spec.num_classes)
    state = _pretrained(spec.width, spec.depth, getattr(spec, "family", "independent"))
    for layer, s in zip(layers, state["layers"]):
        layer.load_state_dict(s)
    head.load_state_dict(state["head"])
    return layers, head
