"""The server side of the engine: strategies that turn client updates into new states.

:class:`FedAvg` (McMahan et al., AISTATS 2017), :class:`FedProx` (Li et al., MLSys 2020:
FedAvg's server plus a proximal loss term on every client), :class:`PersonalizedStrategy`
(the base of every server that keeps one state per client: :class:`LocalOnly` here,
FedMosaic's RELA and FedAlign elsewhere) and :func:`client_drift`, a diagnostic."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ..losses import LossTerm, Proximal
from .client import ClientUpdate
from .state import clone_state, flatten, unflatten

__all__ = [
    "FedAvg",
    "FedProx",
    "LocalOnly",
    "PersonalizedStrategy",
    "Strategy",
    "client_drift",
    "weighted_average",
]


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


def client_drift(
    global_state: dict[str, torch.Tensor], states: list[dict[str, torch.Tensor]], weights=None
) -> dict[str, float]:
    """How far the clients' models moved in one round from the global model they started from.

    With ``delta_i = w_i - w`` (every floating-point tensor, flattened into one vector),
    ``p_i`` the weights normalised to sum to 1 and ``step = sum_i p_i delta_i`` (FedAvg's step):

    - ``distance = sum_i p_i ||delta_i|| / ||w||``: how far a client travels, relative to the
      size of the global weights;
    - ``spread = sqrt(sum_i p_i ||delta_i - step||^2) / ||w||``: how much the clients disagree
      (0 when every client made the same update);
    - ``kept = ||step|| / sum_i p_i ||delta_i||``: the share of the clients' travel that survives
      averaging (1 when they all moved the same way, near 0 when their moves cancel; 1 when
      no client moved at all).

    Parameters
    ----------
    global_state : dict of tensors
        The state the clients received.
    states : list of dict of tensors
        Their states after local training (the same keys).
    weights : sequence of float, optional
        One non-negative weight per client, e.g. sample counts (default: equal).

    Returns
    -------
    dict with float values ``distance``, ``spread`` and ``kept``.

    Examples
    --------
    >>> w = {"a": torch.ones(4)}
    >>> client_drift(w, [{"a": torch.ones(4) * 1.5}, {"a": torch.ones(4) * 0.5}])
    {'distance': 0.5, 'spread': 0.5, 'kept': 0.0}
    """
    states = list(states)
    if not states:
        raise ValueError("states is empty: give the state of at least one client")
    weights = np.ones(len(states)) if weights is None else np.asarray(weights, dtype=np.float64)
    bad = weights.shape != (len(states),) or not np.isfinite(weights).all()
    if bad or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(
            f"weights={weights.tolist()} must hold one finite, non-negative weight per state "
            f"({len(states)}) with a positive sum"
        )
    keys = [k for k, v in global_state.items() if v.is_floating_point()]
    for i, state in enumerate(states):
        if missing := [k for k in keys if k not in state]:
            raise ValueError(f"states[{i}] lacks the global state's keys {missing[:3]}")
    if not keys:
        raise ValueError("global_state has no floating-point tensors to measure")
    w = torch.cat([global_state[k].reshape(-1).double() for k in keys])
    if not w.norm() > 0:
        raise ValueError("global_state is all zeros: the distance relative to it is undefined")
    p = torch.as_tensor(weights / weights.sum())
    deltas = torch.stack([torch.cat([s[k].reshape(-1).double() for k in keys]) - w for s in states])
    step = p @ deltas  # FedAvg's move of the global model
    travel = float(p @ deltas.norm(dim=1))
    spread = float((p @ (deltas - step).pow(2).sum(dim=1)).sqrt())
    return {
        "distance": travel / float(w.norm()),
        "spread": spread / float(w.norm()),
        "kept": float(step.norm()) / travel if travel > 0 else 1.0,
    }


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


class PersonalizedStrategy(Strategy):
    """A server that keeps one *served* state per client and sends each client its own.

    Subclasses fill :attr:`served` in :meth:`aggregate` (``served[client_id] = state``) and
    may override :meth:`message` to send more than the served state (FedAlign adds the
    shared low layers). The base owns what every personalised server needs the same way:

    - :attr:`served`: ``{client_id: state}``, empty before the first aggregation (a client
      then receives ``{}`` and keeps its own initial weights);
    - :meth:`state_dict` / :meth:`load_state_dict`: the served states as
      ``"<client_id>/<name>"`` keys (:func:`~fedlab_mm.federated.state.flatten`), plus any
      other server tensors a subclass returns from :meth:`server_state` under
      ``"server/<name>"``.

    Used by :class:`LocalOnly`, :class:`fedlab_mm.hetero.RELA` and
    :class:`fedlab_mm.broadcast.FedAlign`.
    """

    name = "personalized"

    def setup(self, global_state, client_ids):
        self.served: dict[int, dict[str, torch.Tensor]] = {}

    def message(self, client_id, global_state):
        return self.served.get(client_id, {})

    def server_state(self) -> dict[str, torch.Tensor]:
        """Server tensors other than the served states, to checkpoint (default: none)."""
        return {}

    def load_server_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`server_state` returned."""
        return None

    def state_dict(self):
        out = flatten(self.served)
        out.update({f"server/{k}": v for k, v in self.server_state().items()})
        return out

    def load_state_dict(self, state):
        prefix = "server/"
        self.load_server_state(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
        self.served = unflatten({k: v for k, v in state.items() if not k.startswith(prefix)})


class LocalOnly(PersonalizedStrategy):
    """No federation: each client keeps training its own model (a baseline).

    Every client is served what it uploaded last (its own weights), starting from the
    common initial weights."""

    name = "LocalOnly"
    has_global = False
    communicates = False

    def setup(self, global_state, client_ids):
        self.served = {k: clone_state(global_state) for k in client_ids}

    def aggregate(self, rnd, global_state, updates):
        for u in updates:
            self.served[u.client_id] = clone_state(u.state)
        return global_state
