"""FedMosaic as recipes: RELA with Co-LoRA (:func:`mosaic`), its local-only baseline, and
:data:`VARIANTS`, the comparisons notebook 08 and ``benchmarks/hetero.py`` both run."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..federated import CrossEntropy, LocalOnly, LocalTrainer, Recipe
from .rela import RELA, TaskVector

__all__ = ["LOCAL", "PAIRS", "VARIANTS", "local_only", "mosaic"]


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


def _rela(temperature: float, share_pq: bool = True) -> Callable[..., Recipe]:
    def build(specs: dict, **trainer_kwargs) -> Recipe:
        return mosaic(specs, temperature=temperature, share_pq=share_pq, **trainer_kwargs)

    build.__qualname__ = f"mosaic(temperature={temperature:g}, share_pq={share_pq})"
    return build


#: The baseline every variant is compared with.
LOCAL = "local only"
#: What notebook 08 and ``benchmarks/hetero.py`` compare: label -> ``build(specs,
#: **trainer_kwargs)`` returning a :class:`~fedlab_mm.federated.Recipe`.
#:
#: - ``local only``: nothing shared (:func:`local_only`);
#: - ``RELA, T 0.5`` (the paper's temperature) and ``RELA, T 0.05``: relevance-weighted mixing;
#: - ``RELA, P/Q within a size``: T 0.5, but P and Q never cross sizes;
#: - ``uniform``: T infinite, every other client counts the same, whatever its task.
VARIANTS: dict[str, Callable[..., Recipe]] = {
    LOCAL: local_only,
    "RELA, T 0.5": _rela(0.5),
    "RELA, T 0.05": _rela(0.05),
    "RELA, P/Q within a size": _rela(0.5, share_pq=False),
    "uniform": _rela(math.inf),
}
#: The paired comparisons: every sharing variant against local training, then RELA at T 0.5
#: against the two controls that each switch one of its ingredients off.
PAIRS: list[tuple[str, str]] = [(m, LOCAL) for m in VARIANTS if m != LOCAL] + [
    ("RELA, T 0.5", "uniform"),
    ("RELA, T 0.5", "RELA, P/Q within a size"),
]
