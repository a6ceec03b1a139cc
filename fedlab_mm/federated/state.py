"""Model states as the engine moves them: dicts of tensors, cloned, counted and flattened.

A *state* is a ``state_dict``-like ``dict[str, Tensor]``. Per-client states
(``{client_id: state}``) flatten to one dict with keys ``"<client_id>/<name>"``, the layout
of every checkpoint (:meth:`~fedlab_mm.federated.Simulation.save`) and of every
personalised server's :meth:`~fedlab_mm.federated.PersonalizedStrategy.state_dict`.
"""

from __future__ import annotations

import torch

__all__ = ["clone_state", "flatten", "state_bytes", "unflatten"]


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes needed to send a dict of tensors."""
    return int(sum(t.numel() * t.element_size() for t in state.values()))


def clone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached copy of every tensor: later training cannot change it."""
    return {k: v.detach().clone() for k, v in state.items()}


def flatten(states: dict[int, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{client_id: state}`` as one dict with keys ``"<client_id>/<name>"``."""
    return {f"{owner}/{name}": v for owner, state in states.items() for name, v in state.items()}


def unflatten(flat: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """The inverse of :func:`flatten`; a key without an integer owner is a ``ValueError``."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        owner, sep, name = key.partition("/")
        if not sep or not owner.lstrip("-").isdigit():
            raise ValueError(f"key {key!r} is not '<client_id>/<name>'")
        out.setdefault(int(owner), {})[name] = value
    return out
