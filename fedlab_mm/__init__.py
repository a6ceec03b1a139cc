"""fedlab_mm: a Jupyter-first teaching kit for multimodal federated learning.

>>> import fedlab_mm as fm
>>> rng = fm.set_seed(0)
>>> ds = fm.data.synthetic(n_samples=200, seed=0)

Importing the package does one thing besides defining names: it sets torch's intra-op
thread count to 1 (``FEDLAB_MM_THREADS`` changes it; :func:`fedlab_mm.config.threads` says
why). No seeding, no plotting style, no downloads.
"""

from . import (
    aggregation,
    broadcast,
    captions,
    client,
    clip,
    completion,
    config,
    data,
    decomposition,
    experiments,
    federated,
    frozen,
    hetero,
    lora,
    methods,
    models,
    overlays,
    partition,
    personalization,
    seed,
    similarity,
    skew,
    speech,
    strategies,
    transfer,
    viz,
    widgets,
)
from .config import scale, smoke
from .data import MultimodalDataset
from .experiments import expect
from .seed import set_seed

config.use_threads()

__version__ = "0.1.0"

__all__ = [
    "aggregation",
    "broadcast",
    "captions",
    "client",
    "clip",
    "completion",
    "config",
    "data",
    "decomposition",
    "experiments",
    "federated",
    "frozen",
    "hetero",
    "lora",
    "methods",
    "models",
    "overlays",
    "partition",
    "personalization",
    "seed",
    "similarity",
    "skew",
    "speech",
    "strategies",
    "transfer",
    "viz",
    "widgets",
    "MultimodalDataset",
    "expect",
    "scale",
    "set_seed",
    "smoke",
]
