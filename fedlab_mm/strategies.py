"""The server side of the engine: strategies that turn client updates into new states.

:class:`FedAvg` (McMahan et al., AISTATS 2017), :class:`FedProx` (Li et al., MLSys 2020:
FedAvg's server plus a proximal loss term on every client) and :class:`LocalOnly` (no
federation, a baseline). Personalised strategies return one state per client through
:meth:`Strategy.message`. Re-exported by :mod:`fedlab_mm.federated`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from .client import ClientUpdate, LossTerm, Proximal, _clone

__all__ = ["weighted_average", "Strategy", "FedAvg", "FedProx", "LocalOnly"]


def weighted_average(states: list[dict[str, torch.Tensor]], weights) -> dict[str, torch.Tensor]:
    """``sum_i w_i * state_i`` key by key, with ``w`` normalised to sum to 1."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if len(states) == 0 or len(w) != len(states):
        raise ValueError("need one weight per state and at least one state")
    if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights {w.tolist()} must be non-negative with a positive sum")
    w = w / w.sum()
    out = {}
    for key in states[0]:
        ref = states[0][key]
        if not ref.is_floating_point():
            out[key] = ref.clone()
            continue
        acc = torch.zeros_like(ref, dtype=torch.float64)
        for wi, state in zip(w, states):
            acc += wi * state[key].to(torch.float64)
        out[key] = acc.to(ref.dtype)
    return out


class Strategy(ABC):
    """The server's rule. Override :meth:`aggregate`; personalised strategies also override
    :meth:`message` (what each client receives) and keep per-client states.

    Attributes
    ----------
    has_global : bool
        Whether there is one global model worth evaluating on the server's test set.
    communicates : bool
        False for baselines where nothing travels (bytes are then logged as 0).
    """

    name = "strategy"
    has_global = True
    communicates = True

    def setup(self, global_state: dict[str, torch.Tensor], client_ids: list[int]) -> None:
        """Called once before round 1."""
        return None

    def client_losses(self) -> list[LossTerm]:
        """Loss terms every client adds to its trainer's (FedProx's proximal term)."""
        return []

    def message(self, client_id: int, global_state: dict[str, torch.Tensor]):
        """The state sent to ``client_id`` this round (default: the global state)."""
        return global_state

    @abstractmethod
    def aggregate(
        self, rnd: int, global_state: dict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        """The new global state after round ``rnd``."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (personalised strategies store per-client states here)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FedAvg(Strategy):
    """Average the uploaded states weighted by the clients' sample counts."""

    name = "FedAvg"

    def aggregate(self, rnd, global_state, updates):
        new = dict(global_state)
        new.update(weighted_average([u.state for u in updates], [u.num_samples for u in updates]))
        return new


class FedProx(FedAvg):
    """FedAvg on the server; every client adds ``mu / 2 * ||w - w_global||^2`` to its loss.

    Li et al. (MLSys 2020) also let clients do variable amounts of local work (stragglers that
    send a partial update). The kit models only the proximal term: every client runs the same
    local epochs, and no update is dropped or truncated.
    """

    name = "FedProx"

    def __init__(self, mu: float = 0.01) -> None:
        if not np.isfinite(mu) or mu < 0:
            raise ValueError(f"mu={mu} must be a finite number >= 0")
        self.mu = float(mu)

    def client_losses(self) -> list[LossTerm]:
        return [Proximal(self.mu)] if self.mu > 0 else []

    def __repr__(self) -> str:
        return f"FedProx(mu={self.mu:g})"


class LocalOnly(Strategy):
    """No federation: each client keeps training its own model (a baseline)."""

    name = "LocalOnly"
    has_global = False
    communicates = False

    def setup(self, global_state, client_ids):
        self.states = {k: _clone(global_state) for k in client_ids}

    def message(self, client_id, global_state):
        return self.states[client_id]

    def aggregate(self, rnd, global_state, updates):
        for u in updates:
            self.states[u.client_id] = _clone(u.state)
        return global_state

    def state_dict(self):
        return {f"{k}/{name}": v for k, state in self.states.items() for name, v in state.items()}

    def load_state_dict(self, state):
        self.states = _unflatten(state)


def _unflatten(flat: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        owner, name = key.split("/", 1)
        out.setdefault(int(owner), {})[name] = value
    return out
