"""FedMosaic as recipes: RELA with Co-LoRA (:func:`mosaic`) and its local-only baseline."""

from __future__ import annotations

from ..federated import CrossEntropy, LocalOnly, LocalTrainer, Recipe
from .rela import RELA, TaskVector

__all__ = ["local_only", "mosaic"]


def _trainer(noise: float, **kwargs) -> LocalTrainer:
    settings = {"optimizer": "adam", "lr": 1e-2, "epochs": 1, **kwargs}
    return LocalTrainer(
        losses=[CrossEntropy()],
        upload=lambda k: k.endswith(("p_local", "q_local", "a_local", "b_local")),
        payload=TaskVector(noise=noise),
        **settings,
    )


def mosaic(specs: dict, temperature=0.5, share_pq=True, noise=0.0, **trainer_kwargs) -> Recipe:
    """FedMosaic for clients with per-client ``specs`` (client id -> HeteroSpec): Co-LoRA
    clients uploading task vectors, the RELA server. ``Simulation(clients, *recipe)``.
    ``trainer_kwargs`` go to :class:`LocalTrainer` (default: Adam, lr 1e-2, 1 epoch)."""
    return Recipe(specs, _trainer(noise, **trainer_kwargs), RELA(temperature, share_pq))


def local_only(specs: dict, **trainer_kwargs) -> Recipe:
    """The baseline: every client trains its own local branch; nothing is shared."""
    return Recipe(specs, _trainer(0.0, **trainer_kwargs), LocalOnly())
