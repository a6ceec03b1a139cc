"""Every mechanism's effect, measured with the mechanism on and switched off (issue 21).

An :class:`Effect` is one mechanism, a ``margin(on, seed)`` function and a threshold. The
margin compares two arms that differ only by the mechanism; ``on=False`` switches the
mechanism off with its own switch (a weight of 0, ``T = inf``, ``share_pq=False``, ...), so
the off-margin must fall below the threshold: that is what ``tests/test_effects.py`` checks,
with :func:`check` for both directions, so the effect test and its switch-off cannot drift.

Thresholds sit below the smallest on-margin and above the largest off-margin measured over
seeds 0-4 (``python -m tests.effects`` measures them again and prints both); each Effect's
``measured`` says what was seen. CI runs each Effect's ``seeds`` (seed 0 by default: every
threshold sits below all five measured on-margins, so one seed keeps the suite's time budget
and still fails when the mechanism is off).

Runs are cached per process (:func:`functools.cache`), so an arm shared by the on- and the
off-margin trains once.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from functools import cache

import numpy as np
import torch

import fedlab_mm as fm
from fedlab_mm import broadcast as B
from fedlab_mm import federated as F
from fedlab_mm import hetero as H
from fedlab_mm import mcm_ram as T
from fedlab_mm import recipes
from fedlab_mm.cka_graph import CKAGraph
from fedlab_mm.decomposition import Alignment, Diversity, Independence, fedepa, recovery
from fedlab_mm.models import ModelSpec, build_model
from fedlab_mm.personalization import ALA


@dataclasses.dataclass(frozen=True)
class Effect:
    """A mechanism's measurable effect: ``margin(on, seed)`` must exceed ``threshold`` on every
    seed of ``seeds`` with the mechanism on, and must not with it off."""

    name: str
    shows: str
    off: str
    margin: Callable[[bool, int], float]
    threshold: float
    measured: str
    seeds: tuple[int, ...] = (0,)


def margins(effect: Effect, on: bool = True, seeds=None) -> list[float]:
    return [float(effect.margin(on, s)) for s in (seeds or effect.seeds)]


def check(effect: Effect, on: bool = True) -> list[float]:
    """Assert the effect: every seed's margin above the threshold. Returns the margins."""
    values = margins(effect, on)
    state = "on" if on else f"switched off ({effect.off})"
    assert min(values) > effect.threshold, (
        f"{effect.name} {state}: margins {[round(v, 4) for v in values]} on seeds "
        f"{list(effect.seeds)}, not all above {effect.threshold} ({effect.shows})"
    )
    return values


# ----------------------------------------------------------------------- ALA (FedEPA)
@cache
def _skewed_synthetic(seed: int, alpha: float = 0.1, n: int = 3000):
    """10 clients of ``synthetic(n)``: Dirichlet ``alpha``, or IID with ``alpha=0``."""
    ds = fm.data.synthetic(n, seed=seed)
    rest, test = fm.partition.holdout(ds, 0.2, seed=seed)
    if alpha:
        part = fm.partition.dirichlet(rest, 10, alpha=alpha, seed=seed)
    else:
        part = fm.partition.iid(rest, 10, seed=seed)
    return ds, part.clients(rest, seed=seed), test


@cache
def served_with_init(init: str, seed: int, alpha: float = 0.1) -> float:
    """Each client's model right after the init rule (``"ala"`` or ``"overwrite"``, FedAvg's)
    on its own test split, after 15 rounds on 10 clients (``tests/test_personalization.py``
    reads the IID case, ``alpha=0``)."""
    ds, clients, _ = _skewed_synthetic(seed, alpha)
    rule = ALA() if init == "ala" else F.Overwrite()
    spec = ModelSpec.from_dataset(ds, d=32, hidden=64)
    history = F.simulate(
        clients,
        spec,
        F.LocalTrainer(init=rule),
        F.FedAvg(),
        rounds=15,
        seed=seed,
        progress=False,
        eval_every=15,
    )
    return history.final(split="personal_init")


def ala_margin(on: bool, seed: int) -> float:
    """Each client's model right after the init rule (FedALA's evaluation point), Dirichlet
    0.1: ALA (on) or overwrite (off) minus FedAvg's overwrite."""
    return served_with_init("ala" if on else "overwrite", seed) - served_with_init(
        "overwrite", seed
    )


# ----------------------------------------------------------------------- FedEPA
@cache
def _fedepa_served(fusion: str, seed: int) -> float:
    """FedEPA on synthetic(3000), 10% labels, Dirichlet 0.1, 15 rounds (served model)."""
    ds = fm.data.synthetic(3000, seed=seed)
    rest, _ = fm.partition.holdout(ds, 0.2, seed=seed)
    part = fm.partition.dirichlet(rest, 10, alpha=0.1, seed=seed)
    clients = fm.partition.scarce_labels(part, 0.1, seed=seed).clients(rest, seed=seed)
    recipe = fedepa(ds, k=16, d=32, hidden=64, fusion=fusion, max_grad_norm=5.0)
    history = F.simulate(clients, *recipe, rounds=15, seed=seed, progress=False, eval_every=15)
    return history.final(split="personal_init")


def attention_margin(on: bool, seed: int) -> float:
    """FedEPA with attention fusion (on) or concat (off) minus FedEPA with concat."""
    return _fedepa_served("attention" if on else "concat", seed) - _fedepa_served("concat", seed)


def recovery_after_training(seed: int, losses: list, n: int = 2000, rounds: int = 10):
    """CKA between the aligned/context features and the synthetic world's shared/private
    latents (mean over modalities), after FedAvg with ``losses``; 10% labels, Dirichlet 0.5.
    ``tests/test_decomposition.py`` reads the same measurement at a larger size."""
    ds = fm.data.synthetic(n, seed=seed)
    rest, test = fm.partition.holdout(ds, 0.2, seed=seed)
    part = fm.partition.dirichlet(rest, 10, alpha=0.5, seed=seed)
    part = fm.partition.scarce_labels(part, 0.1, seed=seed)
    spec = ModelSpec.from_dataset(ds, d=32, hidden=64, split=16, fusion="attention")
    sim = F.Simulation(
        part.clients(rest, seed=seed),
        spec,
        F.LocalTrainer(losses=losses),
        F.FedAvg(),
        seed=seed,
        progress=False,
        eval_every=rounds,
    )
    sim.run(rounds)
    model = build_model(spec)
    model.load_state_dict(sim.global_state)
    return recovery(model, test).mean()


@cache
def _aligned_minus_context(weight: float, seed: int) -> float:
    """How much more of the shared latent the aligned features hold than the context ones,
    with the three FedEPA losses at ``weight`` each (10 rounds on ``synthetic(2000)``)."""
    losses = [F.CrossEntropy(), Alignment(weight), Independence(weight), Diversity(weight)]
    cka = recovery_after_training(seed, losses)
    return float(cka["aligned~shared"] - cka["context~shared"])


def fedepa_losses_margin(on: bool, seed: int) -> float:
    """The aligned/context split: aligned~shared minus context~shared CKA, with the losses at
    FedEPA's 0.1 (on) or at 0 (off). Their effect on accuracy is not robust (README)."""
    return _aligned_minus_context(0.1 if on else 0.0, seed)


# ----------------------------------------------------------------------- completion (FedMVP)
@cache
def _grid_served(complete: str, seed: int) -> float:
    """A grid cell (2,000 digits, 10 clients, 10 rounds, 80% missing) read through the tower
    view, FedAvg after ``complete``; the global model on the clients' own test splits."""
    scale = recipes.Scale()
    clients, server = recipes._clients(fm.knobs.check_setting({"missing_rate": 0.8}), seed, scale)
    clients, recipe, test = recipes._plain(complete=complete)(clients, server, scale)
    sim = F.Simulation(
        clients, *recipe, seed=seed, eval_every=scale.rounds, global_test=test, progress=False
    )
    return sim.run(scale.rounds).final(split="personal_init")


def completion_margin(on: bool, seed: int) -> float:
    """Frozen-model completion (on) or masking (off) minus masking."""
    return _grid_served("frozen" if on else "mask", seed) - _grid_served("mask", seed)


# ----------------------------------------------------------------------- MCM + RAM (FedMVP)
@cache
def _joint_unimodal_cosine(weight_scale: float, seed: int) -> float:
    """Mean cosine between the joint representation and each unimodal one on the server's
    test set, after FedAvg with CE + MCM + RAM at FedMVP's weights times ``weight_scale``,
    on FedMVP's model (the grid's FedMVP spec), 80% missing, tower view, 6 rounds."""
    scale = recipes.Scale(rounds=6)
    clients, server = recipes._clients(fm.knobs.check_setting({"missing_rate": 0.8}), seed, scale)
    clients, server = recipes._towers(clients, server)
    spec = ModelSpec.from_dataset(
        clients[0].train,
        d=32,
        hidden=64,
        unimodal=True,
        shared_encoder=True,
        residual_head=True,
        dropout=0.1,
    )
    losses = [F.CrossEntropy(), T.MCM(0.01 * weight_scale), T.RAM(0.5 * weight_scale)]
    trainer = recipes._trainer(scale, losses=losses)
    sim = F.Simulation(
        clients, spec, trainer, F.FedAvg(), seed=seed, progress=False, eval_every=scale.rounds
    )
    sim.run(scale.rounds)
    model = build_model(spec).eval()
    model.load_state_dict(sim.global_state)
    test = server.test
    with torch.no_grad():
        feats = model.features(test.modalities, test.available.float())
    cosines = [(feats["joint"] * z).sum(1).mean() for z in feats["unimodal"].values()]
    return float(torch.stack(cosines).mean())


def mcm_ram_margin(on: bool, seed: int) -> float:
    """The joint-unimodal cosine with the losses on (off: both weights 0) minus CE alone.
    MCM + RAM have no accuracy effect at teaching scale (notebook 05); this is what they do."""
    return _joint_unimodal_cosine(1.0 if on else 0.0, seed) - _joint_unimodal_cosine(0.0, seed)


# ----------------------------------------------------------------------- CKA graph (FedMVP)
@cache
def _noisy_iid(seed: int):
    ds = fm.data.synthetic(3600, seed=seed)
    rest, server = fm.partition.holdout(ds, 1 / 6, seed=seed)
    probe, test = server.subset(slice(0, 200)), server.subset(slice(200, None))
    clients = fm.partition.iid(rest, 10, seed=seed).clients(rest, seed=seed)
    clients = fm.partition.corrupt_clients(clients, [0, 1, 2], kind="noise", noise=10.0, seed=seed)
    return ds, clients, probe, test


@cache
def _noisy_run(power: float | None, seed: int) -> tuple[float, float]:
    """30% of 10 IID clients drowned in noise, 15 rounds: the global model's accuracy on the
    server's test set (mean of the last 3 rounds) and the noisy clients' share of the last
    round's weights; ``power=None`` is FedAvg (weights by sample count)."""
    ds, clients, probe, test = _noisy_iid(seed)
    spec = ModelSpec.from_dataset(ds, d=32, hidden=64)
    strategy = F.FedAvg() if power is None else CKAGraph(spec, probe, power=power)
    sim = F.Simulation(
        clients, spec, F.LocalTrainer(), strategy, seed=seed, global_test=test, progress=False
    )
    accuracy = float(sim.run(15).curve().iloc[-3:].mean())
    if power is None:
        sizes = [len(c.train) for c in clients]
        return accuracy, sum(sizes[:3]) / sum(sizes)
    ids = strategy.client_ids
    return accuracy, float(sum(strategy.weights[ids.index(k)] for k in (0, 1, 2)))


def cka_accuracy_margin(on: bool, seed: int) -> float:
    """The CKA graph sharpened with the kit's power 4 (on) or with uniform weights (off: power
    1e-9) minus FedAvg, server accuracy. Not in :data:`EFFECTS`: over seeds 0-4 it was
    +0.023 / +0.023 / +0.008 / -0.008 / +0.014 (off: -0.003 to +0.007), no margin that holds
    on every seed; FedMVP's own degree weighting (power 1) gains less still (README)."""
    return _noisy_run(4.0 if on else 1e-9, seed)[0] - _noisy_run(None, seed)[0]


def cka_weight_margin(on: bool, seed: int) -> float:
    """The noisy clients' sample share minus their CKA weight (power 4 on; uniform off)."""
    return _noisy_run(None, seed)[1] - _noisy_run(4.0 if on else 1e-9, seed)[1]


# ----------------------------------------------------------------------- FedAlign's query mix
@cache
def _stems():
    return fm.mini_clip.stem_features(fm.data.digits(5000, modalities=("image",), progress=False))


@cache
def _fedalign_served(high_layers: int, seed: int) -> float:
    """FedAlign's served models (Dirichlet 0.1, 10 clients, 10 rounds) on the clients' tests."""
    rest, test = fm.partition.holdout(_stems(), 0.2, seed=seed)
    clients = fm.partition.dirichlet(rest, 10, alpha=0.1, seed=seed).clients(rest, seed=seed)
    recipe = B.fedalign(high_layers=high_layers)
    sim = F.Simulation(clients, *recipe, seed=seed, global_test=test, progress=False, eval_every=10)
    return sim.run(10).final("accuracy", "global")


def query_margin(on: bool, seed: int) -> float:
    """Query-mixed high adapters (on) or a plain average of every layer (off: high_layers=0)
    minus the plain average."""
    return _fedalign_served(1 if on else 0, seed) - _fedalign_served(0, seed)


# ----------------------------------------------------------------------- RELA and Co-LoRA
@cache
def _task_data(n: int = 2000):
    return H.tower_features(fm.data.digits(n, modalities=("image",), progress=False))


@cache
def _one_rela_round(temperature: float, share_pq: bool, seed: int):
    """One round of FedMosaic on 18 task clients (3 tasks x 3 sizes x 2, 50 samples each)."""
    clients, specs, groups = H.task_clients(_task_data(), train_size=50, seed=seed)
    sim = F.Simulation(
        clients,
        *H.mosaic(specs, temperature=temperature, share_pq=share_pq),
        seed=seed,
        progress=False,
        eval_every=1,
    )
    sim.run(1)
    return sim, groups, specs


def _same_task_weight(temperature: float, seed: int) -> float:
    sim, groups, _ = _one_rela_round(temperature, True, seed)
    ids = sim.strategy.client_ids
    group = np.asarray([groups[k] for k in ids])
    same = torch.from_numpy(group[:, None] == group[None, :])
    return float((sim.strategy.weights * same).sum(1).mean())


def rela_margin(on: bool, seed: int) -> float:
    """Weight a client's mix puts on clients of its own task, RELA at T 0.5 (on) or uniform
    (off: T = inf) minus uniform. Sharing does not pay in accuracy here (README)."""
    return _same_task_weight(0.5 if on else math.inf, seed) - _same_task_weight(math.inf, seed)


def pq_margin(on: bool, seed: int) -> float:
    """Share of the P/Q a client is served that comes from clients of other model sizes:
    the served ``p_global`` against the mix of its own size only (relative distance)."""
    sim, _, specs = _one_rela_round(0.5, on, seed)
    strategy, ids = sim.strategy, sim.strategy.client_ids
    size = {k: specs[k] for k in ids}
    gaps = []
    for i, k in enumerate(ids):
        peers = [j for j, other in enumerate(ids) if size[other] == size[k] and other != k]
        served = {n: v for n, v in strategy.served[k].items() if n.endswith("p_global")}
        for name, value in served.items():
            local = name.replace("_global", "_local")
            w = torch.tensor([float(strategy.weights[i, j]) for j in peers])
            if float(w.sum()) == 0:
                continue
            own = sum(
                (wj / w.sum()) * sim.by_id[ids[j]].model.state_dict()[local]
                for wj, j in zip(w, peers)
            )
            gaps.append(float((value - own).norm() / own.norm().clamp_min(1e-12)))
    return float(np.mean(gaps))


@cache
def _served_alone(method: str, seed: int) -> float:
    """RELA alone (one size, three conflicting tasks, 5 clients a task, 50 samples each, 3
    rounds): the mean served accuracy of ``method``'s global branch in the last round."""
    (row,) = H.rela_alone(_task_data(), 50, seed=seed, rounds=3, last=1, methods=[method])
    return row["served"]


def rela_served_margin(on: bool, seed: int) -> float:
    """What RELA decides, scored alone: the served global branch at T 0.05 (on) or uniform
    (off: T = inf) minus uniform."""
    method = "RELA, T 0.05" if on else "uniform"
    return _served_alone(method, seed) - _served_alone("uniform", seed)


@cache
def _gain_kept(family: str, seed: int) -> float:
    """P/Q trained in one size and moved to another (``pq_transfer``, complement, 100 steps):
    the share of the own-size gain the moves keep, averaged over the six moves."""
    t = H.pq_transfer(_task_data(), "complement", steps=100, seed=seed, family=family)
    none, trained = t.loc["no P/Q"].mean(), t.drop(index="no P/Q").to_numpy()
    own, moved = trained.diagonal().mean(), trained[~np.eye(3, dtype=bool)].mean()
    return float((moved - none) / (own - none))


def grown_family_margin(on: bool, seed: int) -> float:
    """Gain kept by P/Q moved between sizes: a family grown from the small model (on) or
    pretrained independently (off) minus the independent family."""
    return _gain_kept("grown" if on else "independent", seed) - _gain_kept("independent", seed)


@cache
def _served_by_size(method: str, seed: int) -> float:
    """Co-LoRA across sizes (``across_sizes``, grown family, 6 rounds, on 5,000 digits as in the
    README: with 2,000 the test splits are small and seed 2's margin was -0.027): the served
    accuracy of ``method``'s global branch, the mean over the last 2 rounds, then over the three
    sizes."""
    rows = H.across_sizes(_task_data(5000), 50, seed=seed, family="grown", rounds=6, last=2,
                          methods=[method])  # fmt: skip
    return float(np.mean([r["served"] for r in rows]))


def across_sizes_margin(on: bool, seed: int) -> float:
    """What P/Q mixed across sizes add to the served branch: RELA T 0.05 with P/Q across sizes
    (on) or within a size (off) minus within a size."""
    within = "RELA, T 0.05, P/Q within a size"
    return _served_by_size("RELA, T 0.05" if on else within, seed) - _served_by_size(within, seed)


# ----------------------------------------------------------------------- FedProx
@cache
def _drift(mu: float | None, seed: int) -> float:
    """Mean distance of each client's trained weights from the global model it received,
    after the first round (5 local epochs, Dirichlet 0.1); ``mu=None`` is FedAvg."""
    ds, clients, _ = _skewed_synthetic(seed, n=2000)
    spec = ModelSpec.from_dataset(ds, d=32, hidden=64)
    strategy = F.FedAvg() if mu is None else F.FedProx(mu)
    sim = F.Simulation(
        clients, spec, F.LocalTrainer(epochs=5), strategy, seed=seed, progress=False, eval_every=1
    )
    start = {k: v.clone() for k, v in sim.global_state.items()}
    sim.run(1)
    dist = []
    for client in sim.clients:
        state = client.model.state_dict()
        dist.append(sum(float((state[k] - start[k]).pow(2).sum()) for k in start) ** 0.5)
    return float(np.mean(dist))


def fedprox_margin(on: bool, seed: int) -> float:
    """Client drift FedAvg / FedProx minus 1: FedProx with mu 0.1 (on) or 0 (off)."""
    return _drift(None, seed) / _drift(0.1 if on else 0.0, seed) - 1.0


# ----------------------------------------------------------------------- the registry
# Thresholds: below the smallest on-margin and above the largest off-margin of seeds 0-4.
EFFECTS = {
    e.name: e
    for e in (
        Effect(
            "ala",
            "ALA's mix starts each client closer to home than FedAvg (served accuracy)",
            "overwrite",
            ala_margin,
            0.05,
            "on +0.270 / +0.205 / +0.084 / +0.294 / +0.134; off 0 on every seed",
        ),
        Effect(
            "fedepa_attention",
            "attention fusion beats concat inside FedEPA (served accuracy, 10% labels)",
            "concat",
            attention_margin,
            0.02,
            "on +0.044 / +0.119 / +0.099 / +0.091 / +0.076; off 0 on every seed",
        ),
        Effect(
            "fedepa_losses_split_not_accuracy",
            "the FedEPA losses put the shared latent in the aligned part, not the context",
            "weights 0",
            fedepa_losses_margin,
            0.035,
            "on +0.074 / +0.263 / +0.063 / +0.216 / +0.162; off -0.002 / -0.005 / -0.042 / "
            "+0.015 / -0.076",
        ),
        Effect(
            "completion",
            "frozen-model fill beats masking on the clients' own tests at 80% missing",
            "mask",
            completion_margin,
            0.025,
            "on +0.110 / +0.100 / +0.080 / +0.050 / +0.134; off 0 on every seed",
        ),
        Effect(
            "mcm_ram_align_not_accuracy",
            "MCM + RAM pull the joint and unimodal representations together (no accuracy "
            "effect at teaching scale: notebook 05)",
            "weights 0",
            mcm_ram_margin,
            0.25,
            "on +0.643 / +0.613 / +0.512 / +0.593 / +0.588; off 0 on every seed",
        ),
        Effect(
            "cka_graph_weight_not_accuracy",
            "the sharpened CKA graph gives noisy clients less than their sample share (its "
            "accuracy gain is not robust: +0.023 / +0.023 / +0.008 / -0.008 / +0.014)",
            "uniform weights",
            cka_weight_margin,
            0.05,
            "on +0.252 / +0.127 / +0.188 / +0.183 / +0.280; off -0.001 to +0.001",
        ),
        Effect(
            "fedalign_query",
            "the query mix of the high adapters beats a plain average (Dirichlet 0.1)",
            "plain average",
            query_margin,
            0.02,
            "on +0.117 / +0.040 / +0.122 / +0.087 / +0.105; off 0 on every seed",
        ),
        Effect(
            "rela_weights_not_accuracy",
            "RELA puts more weight on clients of the same task than a uniform mix (no "
            "accuracy effect at teaching scale: README)",
            "uniform (T = inf)",
            rela_margin,
            0.1,
            "on +0.193 / +0.185 / +0.219 / +0.198 / +0.195; off 0 on every seed",
        ),
        Effect(
            "rela_served",
            "with conflicting tasks, RELA (T 0.05) serves a global branch that scores above a "
            "uniform mix (before local training; after it the gain is gone: README)",
            "uniform (T = inf)",
            rela_served_margin,
            0.02,
            "on +0.043 / +0.075 / +0.065 / +0.061 / +0.059; off 0 on every seed",
        ),
        Effect(
            "colora_pq_mix_not_accuracy",
            "a client's served P/Q mixes clients of other model sizes (no accuracy effect at "
            "teaching scale: README)",
            "share_pq=False",
            pq_margin,
            0.25,
            "on +0.503 / +0.521 / +0.522 / +0.546 / +0.508; off 0 on every seed",
        ),
        Effect(
            "grown_family_pq_transfer",
            "P/Q moved between sizes keep more of their gain when the sizes are grown from the "
            "small model than when they are pretrained independently (issue 26, part 2)",
            "independent family",
            grown_family_margin,
            0.2,
            "on +0.411 / +0.417 / +0.324 / +0.393 / +0.350; off 0 on every seed",
        ),
        Effect(
            "grown_family_served_across_sizes",
            "with the grown family, P/Q mixed across sizes serve a better global branch than "
            "P/Q kept within a size (before local training; after it the two are level: "
            "README)",
            "share_pq=False",
            across_sizes_margin,
            0.01,
            "on +0.024 / +0.036 / +0.038 / +0.042 / +0.056 (seeds 5-7: +0.040 / +0.036 / "
            "+0.022); off 0 on every seed",
        ),
        Effect(
            "fedprox",
            "the proximal term (mu 0.1) cuts client drift over 5 local epochs",
            "mu 0",
            fedprox_margin,
            0.15,
            "on +0.302 / +0.362 / +0.335 / +0.345 / +0.384; off 0 on every seed",
        ),
    )
}


def main(argv=None) -> int:
    """Measure every effect on and off over seeds 0-4 and print the margins (names as
    arguments pick some; ``cka_accuracy`` is the CKA graph's accuracy margin)."""
    extra = {"cka_accuracy": Effect("cka_accuracy", "", "", cka_accuracy_margin, 0.0, "")}
    names = (argv if argv is not None else sys.argv[1:]) or list(EFFECTS)
    for name in names:
        effect = {**EFFECTS, **extra}[name]
        for on in (True, False):
            values = margins(effect, on, seeds=range(5))
            print(
                name,
                "on " if on else "off",
                " / ".join(f"{v:+.4f}" for v in values),
                f"min {min(values):+.4f} max {max(values):+.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
