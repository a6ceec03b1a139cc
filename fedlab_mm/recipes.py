"""The cells of a method x heterogeneity grid: one method, one setting, one seed.

A cell runs:

1. the digits as image + caption pairs (:func:`fedlab_mm.data.digits`, half the captions vague
   so the caption alone does not give the answer away), 20% held out by the server as its
   global test set. The CKA-graph methods also need a probe: by default one the server can
   make itself, public digits (scikit-learn's, :func:`fedlab_mm.data.public_digits`) with
   captions it writes from their labels (``Scale(probe_source="public")``);
   ``probe_source="held_out"`` takes it from the held-out split of the clients' own
   distribution instead, privileged data no real server holds (notebook 06 compares them);
2. a **setting** of four heterogeneity knobs, applied in this order: Dirichlet label skew
   ``alpha``, a ``missing_rate`` of samples missing one modality, a ``labeled_fraction`` of
   usable labels, and a ``corrupted_fraction`` of clients whose training inputs are drowned
   in noise (:data:`KNOBS`, defaults in :data:`BASE`);
3. a **method** from :data:`METHODS`, built from the recipes of notebooks 02 to 08. Each
   method reads the data the way its paper does: the image-only methods (broadcasting, RELA)
   drop the caption and the samples without an image; the others read images through the
   frozen public image tower of :mod:`fedlab_mm.pretrained` (so a 10-round run takes seconds)
   and the caption embedding;
4. the engine runs it, and :func:`run_cell` returns one tidy record: personalised and
   served accuracy over the clients' test splits, the global model's server-test accuracy
   where the method has one, uplink per client and round, and seconds.

:mod:`fedlab_mm.experiments` runs many cells (grids, the papers' claims, the command line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from functools import lru_cache

from . import broadcast, completion, config, data, hetero, mcm_ram, mini_clip, partition
from .cka_graph import CKAGraph
from .decomposition import fedepa
from .federated import (
    CrossEntropy,
    FedAvg,
    FedProx,
    LocalOnly,
    LocalTrainer,
    Recipe,
    Simulation,
)
from .knobs import BASE, KNOBS, check_setting
from .models import ModelSpec
from .partition import ClientData
from .personalization import ALA

__all__ = [
    "BASE",
    "KNOBS",
    "METHODS",
    "PROBE_SOURCES",
    "Method",
    "Scale",
    "Server",
    "cell_key",
    "run_cell",
]

#: Bumped whenever a cell's meaning changes, so stale cached cells are not reused.
#: 5: a cell records the mean over its last ``Scale.last`` rounds, not the final round.
#: 6: RELA's relevance ignores columns of rounding residue (``hetero.DEAD_COLUMN``).
CACHE_VERSION = 6
#: Where the server's CKA probe comes from (:class:`Scale`).
PROBE_SOURCES = ("public", "held_out")


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big one cell is: digits drawn, clients, rounds, and every client's optimiser
    (Adam; 2 epochs at lr 3e-3 reach 80-90% on the base setting in 10 rounds, where the
    notebooks' 1 epoch at 1e-3 is still near chance after 2 rounds), and the server's probe:
    ``probe`` samples from ``probe_source`` (one of :data:`PROBE_SOURCES`).

    A cell records the mean over its ``last`` rounds (all of them in a shorter run), not the
    final round alone: under label skew FedAvg's accuracy swings from round to round, and a
    single round can order two methods either way."""

    n_samples: int = 2000
    num_clients: int = 10
    rounds: int = 10
    epochs: int = 2
    lr: float = 3e-3
    batch_size: int = 32
    probe: int = 100
    probe_source: str = "public"
    last: int = 3

    def __post_init__(self) -> None:
        if self.probe_source not in PROBE_SOURCES:
            raise ValueError(f"probe_source={self.probe_source!r} must be one of {PROBE_SOURCES}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r} must be a finite number > 0")
        for name in ("n_samples", "num_clients", "rounds", "epochs", "batch_size", "probe", "last"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if not 100 <= self.n_samples <= 5000:
            raise ValueError(f"n_samples={self.n_samples} must be in 100..5000 (the digits)")
        if self.probe >= self.n_samples // 5:
            raise ValueError(
                f"probe={self.probe} must be smaller than the server's 20% "
                f"({self.n_samples // 5} samples)"
            )

    @classmethod
    def default(cls) -> Scale:
        """The full scale, or a tiny one in smoke mode (``FEDLAB_MM_SMOKE=1``)."""
        return cls() if not config.smoke() else cls(n_samples=600, num_clients=5, rounds=2)


# ----------------------------------------------------------------- data views
def _map(clients, fn) -> list[ClientData]:
    return [ClientData(c.client_id, fn(c.train), fn(c.test)) for c in clients]


def _towers(clients, server):
    """The tower view of a setting: every client's images, and the server's, through the
    frozen public tower (:func:`fedlab_mm.hetero.tower_features`); captions as they are."""
    view = hetero.tower_features
    return _map(clients, view), Server(view(server.probe), view(server.test))


def _image_only(features: Callable):
    """Keep the samples that have a real image, drop the caption, then ``features``."""

    def view(ds):
        col = ds.names.index("image")
        ds = ds.subset(ds.present[:, col])
        return features(
            ds.replace(
                modalities={"image": ds.modalities["image"]},
                present=ds.present[:, col : col + 1],
                filled=ds.filled[:, col : col + 1],
            )
        )

    return view


# ----------------------------------------------------------------- methods
@dataclasses.dataclass(frozen=True)
class Method:
    """A named recipe of the series, as a grid can run it.

    ``build(clients, server, scale)`` gets the clients of a setting and the server's
    :class:`Server` data and returns ``(clients, recipe, server_test)``: the clients in the
    form the method reads (features, completed modalities, ...), the recipe, and the
    server's test set in the same form (``None`` when the method has no global model).
    """

    name: str
    label: str
    paper: str
    notebook: str
    build: Callable


@dataclasses.dataclass(frozen=True)
class Server:
    probe: object
    test: object


def _optimiser(scale) -> dict:
    return {
        "optimizer": "adam",
        "lr": scale.lr,
        "epochs": scale.epochs,
        "batch_size": scale.batch_size,
    }


def _trainer(scale, **kw) -> LocalTrainer:
    return LocalTrainer(max_grad_norm=5.0, **_optimiser(scale), **kw)


def _spec(clients, **kw) -> ModelSpec:
    return ModelSpec.from_dataset(clients[0].train, d=32, hidden=64, **kw)


def _plain(strategy=None, init=None, complete=None):
    """A method on the tower view: FedAvg-style recipes, optionally completion first."""

    def build(clients, server, scale):
        if complete is not None:
            clients = completion.complete(clients, complete)
        clients, server = _towers(clients, server)
        kw = {} if init is None else {"init": init()}
        make = strategy or FedAvg
        return clients, Recipe(_spec(clients), _trainer(scale, **kw), make()), server.test

    return build


def _cka(clients, server, scale):
    clients, server = _towers(clients, server)
    spec = _spec(clients)
    return clients, Recipe(spec, _trainer(scale), CKAGraph(spec, server.probe)), server.test


def _fedmvp(clients, server, scale):
    """Frozen-model completion, MCM + RAM on unimodal representations, CKA graph server, on
    FedMVP's model (one shared encoder, a residual block before the classifier)."""
    clients, server = _towers(completion.complete(clients, "frozen"), server)
    spec = _spec(clients, unimodal=True, shared_encoder=True, residual_head=True, dropout=0.1)
    losses = [CrossEntropy(), mcm_ram.MCM(), mcm_ram.RAM()]  # the code's forms (defaults)
    # FedMVP's cka_similarity normalises each row first; the joint representation of a
    # unimodal=True model is already unit norm, so this changes no number here
    server_step = CKAGraph(spec, server.probe, normalize_rows=True)
    recipe = Recipe(spec, _trainer(scale, losses=losses), server_step)
    return clients, recipe, server.test


def _fedepa(clients, server, scale):
    clients, server = _towers(clients, server)
    recipe = fedepa(clients[0].train, k=16, d=32, hidden=64, **_optimiser(scale))
    return clients, recipe, server.test


def _adapters(scale) -> dict:
    """Adapter recipes keep their own learning rate; epochs and batches follow the scale."""
    return {"epochs": scale.epochs, "batch_size": scale.batch_size}


def _broadcasting(make):
    def build(clients, server, scale):
        view = _image_only(mini_clip.stem_features)
        return _map(clients, view), make(**_adapters(scale)), view(server.test)

    return build


def _sized(make):
    """Clients cycle through the three model sizes of :data:`fedlab_mm.hetero.SIZES`."""

    def build(clients, server, scale):
        clients = _map(clients, _image_only(hetero.tower_features))
        sizes = list(hetero.SIZES)
        specs = {c.client_id: hetero.SIZES[sizes[i % len(sizes)]] for i, c in enumerate(clients)}
        return clients, make(specs, **_adapters(scale)), None

    return build


def _methods() -> dict[str, Method]:
    rows = [
        ("fedavg", "FedAvg", "baseline", "02", _plain()),
        ("fedprox", "FedProx", "baseline", "02", _plain(lambda: FedProx(0.01))),
        ("local", "local only", "baseline", "03", _plain(LocalOnly)),
        ("ala", "ALA", "FedEPA", "03", _plain(init=ALA)),
        ("fedepa", "FedEPA", "FedEPA", "04", _fedepa),
        ("zero_fill", "zero-fill", "FedMVP", "05", _plain(complete="zero")),
        ("knn_fill", "kNN fill", "FedMVP", "05", _plain(complete="knn")),
        ("frozen_fill", "frozen-model fill", "FedMVP", "05", _plain(complete="frozen")),
        ("cka", "CKA graph", "FedMVP", "06", _cka),
        ("fedmvp", "FedMVP", "FedMVP", "05-06", _fedmvp),
        ("fedalign", "FedAlign (image only)", "FedAlign", "07", _broadcasting(broadcast.fedalign)),
        (
            "full_fedavg",
            "full FedAvg (FedAlign's net)",
            "FedAlign",
            "07",
            _broadcasting(broadcast.full_fedavg),
        ),
        ("rela", "RELA, 3 sizes (image only)", "FedMosaic", "08", _sized(hetero.mosaic)),
        (
            "sized_local",
            "local only, 3 sizes (image only)",
            "FedMosaic",
            "08",
            _sized(hetero.local_only),
        ),
    ]
    return {name: Method(name, label, paper, nb, build) for name, label, paper, nb, build in rows}


#: Every method a grid can run, by name.
METHODS: dict[str, Method] = _methods()


# ----------------------------------------------------------------- one cell
@lru_cache(maxsize=4)
def _dataset(n_samples: int):
    ds = data.digits(n_samples, modalities=("image", "text"), vague_fraction=0.5, progress=False)
    return partition.holdout(ds, 0.2, seed=0)


def _clients(setting: dict, seed: int, scale: Scale):
    rest, server = _dataset(scale.n_samples)
    part = partition.dirichlet(rest, scale.num_clients, alpha=setting["alpha"], seed=seed)
    if setting["missing_rate"] > 0:
        part = partition.missing_modalities(part, rest, setting["missing_rate"], seed=seed)
    if setting["labeled_fraction"] < 1:
        part = partition.scarce_labels(part, setting["labeled_fraction"], seed=seed)
    clients = part.clients(rest, seed=seed)
    broken = round(setting["corrupted_fraction"] * scale.num_clients)
    if broken:
        clients = partition.corrupt_clients(clients, range(broken), "noise", noise=10.0, seed=seed)
    test = server.subset(slice(scale.probe, None))  # the same test set for either probe
    if scale.probe_source == "held_out":
        probe = server.subset(slice(0, scale.probe))
    else:
        probe = data.public_digits(
            scale.probe, seed=seed, modalities=("image", "text"), vague_fraction=0.5
        )
    return clients, Server(probe, test)


def run_cell(method: str, setting: dict, seed: int = 0, scale: Scale | None = None) -> dict:
    """Run one method on one setting with one seed; return its tidy record.

    Every accuracy is the mean over the last ``scale.last`` rounds. The record holds the
    method, the seed, the four knobs, ``accuracy`` (mean personalised
    test accuracy over clients: each client's model after its last local update),
    ``served_accuracy`` (the same test splits, the model each client started its last round
    from: the global model for FedAvg, the ALA mix for ALA), ``server_accuracy`` (the
    global model on the server's test set, NaN without a global model), ``uplink_kb`` (per
    client and round) and ``seconds``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; valid methods: {list(METHODS)}")
    scale = scale or Scale.default()
    setting = check_setting(setting)
    start = time.perf_counter()
    clients, server = _clients(setting, int(seed), scale)
    clients, recipe, server_test = METHODS[method].build(clients, server, scale)
    last = min(scale.last, scale.rounds)
    sim = Simulation(
        clients,
        *recipe,
        seed=int(seed),
        eval_every=scale.rounds,
        global_test=server_test,
        progress=False,
    )
    if scale.rounds > last:
        sim.run(scale.rounds - last)
    sim.eval_every = 1  # evaluate each of the last rounds
    history = sim.run(last)
    has_server = recipe.strategy.has_global and server_test is not None
    return {
        "method": method,
        "seed": int(seed),
        **setting,
        "accuracy": history.last(split="personal", rounds=last),
        "served_accuracy": history.last(split="personal_init", rounds=last),
        "server_accuracy": history.last(rounds=last) if has_server else math.nan,
        "uplink_kb": history.kilobytes()["uplink"],
        "seconds": time.perf_counter() - start,
    }


def cell_key(method: str, setting: dict, seed: int, scale: Scale) -> str:
    """The cache file name of a cell: a hash of everything that decides its result."""
    text = json.dumps(
        {
            "method": method,
            "setting": check_setting(setting),
            "seed": int(seed),
            "scale": dataclasses.asdict(scale),
            "version": CACHE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]
