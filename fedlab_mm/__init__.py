"""fedlab_mm: a Jupyter-first teaching kit for multimodal federated learning.

>>> import fedlab_mm as fm
>>> rng = fm.set_seed(0)
>>> ds = fm.data.synthetic(n_samples=200, seed=0)

The modules, in layers that import only downwards (the README's layout picture; a test
enforces it with import-linter):

- settings and pure maths: ``config``, ``seed``, ``knobs``, ``losses``, ``cka``;
- data: ``data`` (data sets, captions, speech, the disk cache), ``pretrained`` (frozen
  models built from public data), ``towers`` (frozen transformers encoders), ``partition``
  (splits, overlays, corruption, skew);
- plots and widgets: ``viz``, ``widgets`` (they read data and results, never train);
- models: ``models`` (specs, layers, the network, the model contract, LoRA);
- the engine: ``federated`` (client, server, simulation, history, states);
- mechanisms: ``personalization`` (ALA), ``mini_clip``, ``decomposition`` (FedEPA),
  ``completion`` and ``mcm_ram`` (FedMVP), ``cka_graph``, ``broadcast`` (FedAlign),
  ``hetero`` (FedMosaic: Co-LoRA and RELA);
- ``recipes`` (the grid's methods, one cell), ``flower`` (the Flower adapter);
- ``experiments`` (grids, the papers' claims, the ``fedlab-mm`` command).

Importing the package does one thing besides defining names: it sets torch's intra-op
thread count to 1 (``FEDLAB_MM_THREADS`` changes it; :func:`fedlab_mm.config.threads` says
why). No seeding, no plotting style, no downloads.
"""

from . import (
    broadcast,
    cka,
    cka_graph,
    completion,
    config,
    data,
    decomposition,
    experiments,
    federated,
    hetero,
    knobs,
    losses,
    mcm_ram,
    mini_clip,
    models,
    partition,
    personalization,
    pretrained,
    recipes,
    seed,
    towers,
    viz,
    widgets,
)
from .config import scale, smoke
from .data import MultimodalDataset
from .experiments import expect
from .seed import set_seed

# Earlier names of modules, kept working for code written against them (one line each; the
# notebooks, tests and docs use the names above).
aggregation = cka_graph
captions = data.captions
client = federated.client
clip = mini_clip
frozen = pretrained
lora = models.lora
methods = recipes
overlays = partition.overlays
similarity = cka
skew = partition.skew
speech = data.speech
strategies = federated.server
transfer = mcm_ram

config.use_threads()

__version__ = "0.1.0"

__all__ = [
    "broadcast",
    "cka",
    "cka_graph",
    "completion",
    "config",
    "data",
    "decomposition",
    "experiments",
    "federated",
    "hetero",
    "knobs",
    "losses",
    "mcm_ram",
    "mini_clip",
    "models",
    "partition",
    "personalization",
    "pretrained",
    "recipes",
    "seed",
    "towers",
    "viz",
    "widgets",
    "MultimodalDataset",
    "expect",
    "scale",
    "set_seed",
    "smoke",
]
