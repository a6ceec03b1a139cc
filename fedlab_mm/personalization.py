"""FedEPA's personalised local aggregation: learned, client-specific mixing of the global
model into the local one.

FedEPA (arXiv 2504.12025) learns client-specific aggregation weights from each client's
*labelled* data. Its equations are not public; this module follows FedALA's element-wise rule
(Zhang et al., AAAI 2023, whose code is public), which is the closest documented mechanism:

- lower layers take the global values;
- the top tensors become ``local + (global - local) * W`` with ``W`` in [0, 1] (element-wise,
  or one scalar per tensor with ``granularity="layer"``);
- ``W`` is learned on a random contiguous ``sample_fraction`` of the client's labelled samples:
  ``W <- clip(W - eta * dL/dtheta_hat * (global - local), 0, 1)`` after every batch;
- the first round in which it runs iterates epochs over that slice in a fixed order, as
  FedALA's code does, until more than ``window`` epochs have run and the std of the last
  ``window`` recorded losses falls below ``threshold``. As in FedALA the recorded loss of an
  epoch is its last batch's, which in a fixed order is the same batch every epoch, so the test
  sees ``W`` settle and not batch-to-batch noise. The cap ``max_epochs`` is the kit's (FedALA
  has none and can hang). Later rounds run one epoch; ``W`` starts at 1 (= take the global
  model) and stays on the client.

Communication is unchanged from FedAvg: ``W`` never leaves the client.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .federated import Client, InitRule, Overwrite

__all__ = ["ALAConfig", "ALA", "mixing_weights", "top_parameter_names", "GRANULARITIES"]

GRANULARITIES = ("element", "layer")
_PREFIX = "ala/"


@dataclass(frozen=True)
class ALAConfig:
    """Settings of adaptive local aggregation (FedALA's defaults where it has them).

    Attributes
    ----------
    eta : float
        Step size of the weight update (FedALA: 1.0).
    sample_fraction : float
        Share of the labelled samples used to learn ``W``, in (0, 1] (FedALA: 0.8).
    top_layers : int or tuple of str
        Which tensors are mixed: the last ``p`` parameter tensors (FedALA: 2, the classifier's
        weight and bias), or the parameters of named modules (default: FedEPA's natural choice,
        the fusion block and the classifier).
    granularity : {"element", "layer"}
        One weight per parameter element (FedALA) or one per tensor (easier to plot).
    threshold : float
        Convergence: std of the last ``window`` epoch losses (FedALA code: 0.1, paper 0.01).
    window : int
        How many epoch losses the convergence test looks at (FedALA: 10).
    max_epochs : int
        Cap on the first round's epochs (FedALA has none and can hang).
    batch_size : int
    shuffle : bool
        Reshuffle the slice every epoch (the kit's first version). FedALA iterates it in a
        fixed order (False, the default); with a reshuffle the last batch, whose loss the
        convergence test records, changes every epoch and the test mostly measures noise.
    """

    eta: float = 1.0
    sample_fraction: float = 0.8
    top_layers: int | tuple[str, ...] = ("fusion", "head")
    granularity: str = "element"
    threshold: float = 0.1
    window: int = 10
    max_epochs: int = 20
    batch_size: int = 32
    shuffle: bool = False

    def __post_init__(self) -> None:
        if not np.isfinite(self.eta) or self.eta <= 0:
            raise ValueError(f"eta={self.eta} must be a finite number > 0")
        if not 0 < self.sample_fraction <= 1:
            raise ValueError(f"sample_fraction={self.sample_fraction} must lie in (0, 1]")
        if isinstance(self.top_layers, bool) or not isinstance(self.top_layers, (int, tuple)):
            raise ValueError(f"top_layers={self.top_layers!r} must be an int or a tuple of names")
        if isinstance(self.top_layers, int) and self.top_layers < 1:
            raise ValueError(f"top_layers={self.top_layers} must be >= 1")
        if isinstance(self.top_layers, tuple) and (
            not self.top_layers or not all(isinstance(n, str) for n in self.top_layers)
        ):
            raise ValueError(f"top_layers={self.top_layers!r} must name at least one module")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity={self.granularity!r} must be one of {GRANULARITIES}")
        if not self.threshold > 0:
            raise ValueError(f"threshold={self.threshold} must be > 0")
        if not isinstance(self.shuffle, bool):
            raise ValueError(f"shuffle={self.shuffle!r} must be True or False")
        for name in ("window", "max_epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")

    def replace(self, **changes) -> ALAConfig:
        return dataclasses.replace(self, **changes)


def top_parameter_names(model: torch.nn.Module, top_layers: int | tuple[str, ...]) -> list[str]:
    """The names of the parameters ALA mixes, in model order."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if isinstance(top_layers, int):
        if top_layers > len(names):
            raise ValueError(
                f"top_layers={top_layers} exceeds the model's {len(names)} parameter tensors"
            )
        return names[-top_layers:]
    chosen = [n for n in names if any(n == m or n.startswith(m + ".") for m in top_layers)]
    modules = sorted({n.split(".")[0] for n in names})
    unknown = [m for m in top_layers if not any(n == m or n.startswith(m + ".") for n in names)]
    if unknown:
        raise ValueError(
            f"top_layers names {unknown} match no parameters; top-level modules: {modules}"
        )
    if len(chosen) == len(names):
        raise ValueError("top_layers covers every parameter; leave some lower layers to share")
    return chosen


class ALA(InitRule):
    """Adaptive local aggregation as a :class:`~fedlab_mm.federated.LocalTrainer` init rule.

    Examples
    --------
    >>> trainer = fm.federated.LocalTrainer(init=ALA(ALAConfig(top_layers=2)))  # doctest: +SKIP
    """

    def __init__(self, config: ALAConfig | None = None) -> None:
        self.config = config or ALAConfig()

    def __repr__(self) -> str:
        return f"ALA({self.config})"

    def __call__(self, client: Client, received: dict[str, torch.Tensor], rnd: int) -> None:
        cfg = self.config
        model = client.model
        if client.rounds_trained == 0:  # nothing local yet: local == initial, take the global
            Overwrite()(client, received, rnd)
            return
        names = top_parameter_names(model, cfg.top_layers)
        params = dict(model.named_parameters())
        local = {n: params[n].detach().clone() for n in names}
        lower = {k: v for k, v in received.items() if k not in local}
        model.load_state_dict(lower, strict=False)  # lower layers: the global values
        diff = {n: received[n] - local[n] for n in names}  # (global - local), per tensor
        weights = {n: client.state.get(_PREFIX + n, self._ones(local[n])) for n in names}
        if all(bool((d == 0).all()) for d in diff.values()):
            self._apply(params, local, diff, weights)  # identical models: a no-op
            self._store(client, weights)
            return
        data = client.data.train
        labeled = torch.nonzero(data.labeled).flatten()
        if len(labeled):
            first = _PREFIX + "started" not in client.state
            epochs = cfg.max_epochs if first else 1
            losses = self._learn(model, params, local, diff, weights, data, labeled, epochs)
            client.state[_PREFIX + "started"] = torch.tensor(1)
            client.state[_PREFIX + "epochs"] = torch.tensor(len(losses))
        self._apply(params, local, diff, weights)
        self._store(client, weights)

    # ------------------------------------------------------------------ pieces
    def _ones(self, like: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(like) if self.config.granularity == "element" else torch.ones(())

    @staticmethod
    @torch.no_grad()
    def _apply(params, local, diff, weights) -> None:
        for n in local:
            params[n].copy_(local[n] + diff[n] * weights[n])

    @staticmethod
    def _store(client: Client, weights) -> None:
        for n, w in weights.items():
            client.state[_PREFIX + n] = w.detach().clone()

    def _learn(self, model, params, local, diff, weights, data, labeled, epochs) -> list[float]:
        """Update ``weights`` in place on a random contiguous slice of the labelled samples."""
        cfg = self.config
        n_use = max(1, int(round(cfg.sample_fraction * len(labeled))))
        start = int(torch.randint(0, len(labeled) - n_use + 1, ()))
        subset = labeled[start : start + n_use]
        names = list(local)
        tensors = [params[n] for n in names]
        present = data.available.float()
        model.train()
        losses: list[float] = []
        for _ in range(epochs):
            order = subset[torch.randperm(len(subset))] if cfg.shuffle else subset
            for b in range(0, len(order), cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                self._apply(params, local, diff, weights)
                logits = model({m: x[idx] for m, x in data.modalities.items()}, present[idx])
                loss = F.cross_entropy(logits, data.y[idx])
                grads = torch.autograd.grad(loss, tensors)
                for n, g in zip(names, grads):
                    step = g * diff[n]  # dL/dW by the chain rule, element by element
                    if cfg.granularity == "layer":
                        step = step.sum()
                    weights[n] = (weights[n] - cfg.eta * step).clamp(0.0, 1.0)
            losses.append(loss.item())  # the epoch's last batch, as FedALA records it
            window = losses[-cfg.window :]
            if len(losses) > cfg.window and np.std(window) < cfg.threshold:  # FedALA's test
                break
        return losses


def mixing_weights(client: Client) -> dict[str, torch.Tensor]:
    """The learned weights ``W`` a client holds, by parameter name (empty before round 2)."""
    return {
        k[len(_PREFIX) :]: v
        for k, v in client.state.items()
        if k.startswith(_PREFIX) and k[len(_PREFIX) :] not in ("started", "epochs")
    }
