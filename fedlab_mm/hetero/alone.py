"""RELA on its own (FedMosaic's data-heterogeneity half, notebook 08 part 1): one model size,
conflicting tasks, several clients per task, few samples each; what RELA decides (the served
global branch) scored apart from what local training makes of it.

:data:`ALONE` holds the comparison: local only, uniform mixing, RELA at T 0.5 and 0.05, and
the **oracle** that mixes uniformly within the true task groups (the reference mix for a
server that knew the tasks; not a strict ceiling, since a sharper mix can beat it).
:func:`rela_alone` runs them on one seed and sample size and returns one row per method.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..federated import Recipe, Simulation
from .model import SIZES
from .probes import served_accuracy
from .recipes import local_only, mosaic
from .rela import RELA
from .tasks import CONFLICTING, task_clients

__all__ = ["ACROSS", "ALONE", "ORACLE", "across_sizes", "rela_alone"]

ORACLE = "oracle"


def _rela(temperature: float, share_pq: bool = True) -> Callable[..., Recipe]:
    def build(specs: dict, groups: dict, noise: float = 0.0, **trainer_kwargs) -> Recipe:
        return mosaic(specs, temperature=temperature, share_pq=share_pq, noise=noise,
                      **trainer_kwargs)  # fmt: skip

    build.__qualname__ = f"mosaic(temperature={temperature:g}, share_pq={share_pq})"
    return build


def _oracle(specs: dict, groups: dict, noise: float = 0.0, **trainer_kwargs) -> Recipe:
    recipe = mosaic(specs, temperature=math.inf, noise=noise, **trainer_kwargs)
    return recipe._replace(strategy=RELA(math.inf, groups=groups))


def _local(specs: dict, groups: dict, noise: float = 0.0, **trainer_kwargs) -> Recipe:
    return local_only(specs, **trainer_kwargs)


_oracle.__qualname__ = "RELA(temperature=inf, groups=the true tasks)"
_local.__qualname__ = "local_only"

#: label -> ``build(specs, groups, noise=0.0, **trainer_kwargs)``; ``groups`` is
#: ``{client_id: task}``, which only the oracle reads; ``noise`` is the task vectors' noise.
ALONE: dict[str, Callable[..., Recipe]] = {
    "local only": _local,
    "uniform": _rela(math.inf),
    "RELA, T 0.5": _rela(0.5),
    "RELA, T 0.05": _rela(0.05),
    ORACLE: _oracle,
}


#: Part 2, across sizes: label -> ``build(specs, groups, noise=0.0, **trainer_kwargs)``.
ACROSS: dict[str, Callable[..., Recipe]] = {
    "local only": _local,
    "RELA, T 0.05": _rela(0.05),
    "RELA, T 0.05, P/Q within a size": _rela(0.05, share_pq=False),
}


def _checked(n_train, rounds, last, methods, table, **more) -> dict:
    for name, value, low in (("n_train", n_train, 1), ("rounds", rounds, 1), ("last", last, 1),
                             *((k, v, 2) for k, v in more.items())):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    if last > rounds:
        raise ValueError(f"last={last} must be <= rounds={rounds}")
    unknown = [m for m in (methods or []) if m not in table]
    if unknown:
        raise ValueError(f"methods {unknown} are not among {list(table)}")
    return table if methods is None else {m: table[m] for m in methods}


def _per_client(clients, recipe, seed, rounds, last) -> tuple[dict, dict]:
    """Run ``recipe``; each client's served and personal accuracy, means over the last
    ``last`` rounds (served: NaN where the strategy serves nothing to score)."""
    sim = Simulation(clients, *recipe, seed=seed, progress=False)
    served = {c.client_id: [] for c in clients}
    personal = {c.client_id: [] for c in clients}
    for rnd in range(1, rounds + 1):
        sim.step(rnd, evaluate_now=rnd > rounds - last)
        if rnd <= rounds - last:
            continue
        mixes = isinstance(sim.strategy, RELA)  # local only serves nothing to score
        scores = served_accuracy(sim.clients, sim.strategy) if mixes else {}
        for client in sim.clients:
            served[client.client_id].append(scores.get(client.client_id, np.nan))
            personal[client.client_id].append(client.evaluate()["accuracy"])
    return ({k: float(np.mean(v)) for k, v in served.items()},
            {k: float(np.mean(v)) for k, v in personal.items()})  # fmt: skip


def rela_alone(data, n_train: int, seed: int = 0, rounds: int = 10, last: int = 3,
               size: str = "small", per_task: int = 5, tasks=CONFLICTING, noise: float = 0.0,
               methods=None, **trainer_kwargs) -> list[dict]:  # fmt: skip
    """One seed of the comparison: ``per_task`` clients of one ``size`` for each of ``tasks``,
    ``n_train`` training samples each (their test splits stay whole), ``rounds`` rounds of
    one local epoch each (``trainer_kwargs`` go to :class:`LocalTrainer`).

    ``data`` is a data set of tower features (:func:`tower_features` of the digits' images);
    ``seed`` sets both the split into clients and the simulation. ``methods`` picks labels of
    :data:`ALONE` (default: all five).

    Returns one row per method: ``served`` (the mean over clients of
    :func:`served_accuracy`: the global branch RELA mixed, gate forced to it, before local
    training; NaN for local only) and ``personal`` (each client's own model after local
    training), each the mean over the last ``last`` rounds. ``noise`` is the task vectors'
    privacy noise std.
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r} must be one of {list(SIZES)}")
    methods = _checked(n_train, rounds, last, methods, ALONE, per_task=per_task)
    clients, specs, groups = task_clients(
        data, tasks=tasks, sizes=(size,) * per_task, train_size=n_train, seed=seed
    )
    group_of = {c.client_id: g for c, g in zip(clients, groups)}
    rows = []
    for name, build in methods.items():
        recipe = build(specs, group_of, noise=noise, **trainer_kwargs)
        served, personal = _per_client(clients, recipe, seed, rounds, last)
        row = {"method": name, "n_train": n_train, "seed": seed}
        rows.append(row | {"served": float(np.mean(list(served.values()))),
                           "personal": float(np.mean(list(personal.values())))})  # fmt: skip
    return rows


def across_sizes(data, n_train: int, seed: int = 0, family: str = "grown", rounds: int = 10,
                 last: int = 3, per_size: int = 2, tasks=CONFLICTING, methods=None,
                 **trainer_kwargs) -> list[dict]:  # fmt: skip
    """Part 2 on one seed: each of ``tasks`` has ``per_size`` clients of each of the three
    sizes of ``family`` (:func:`family_sizes`), ``n_train`` samples each; the servers of
    :data:`ACROSS` (local only, RELA at T 0.05 with P/Q mixed across sizes, the same with P/Q
    kept within a size). One row per method and size (``HeteroSpec.label``), with ``served``
    and ``personal`` as in :func:`rela_alone`, averaged over that size's clients."""
    methods = _checked(n_train, rounds, last, methods, ACROSS, per_size=per_size)
    sizes = tuple(SIZES) * per_size
    clients, specs, groups = task_clients(
        data, tasks=tasks, sizes=sizes, train_size=n_train, seed=seed, family=family
    )
    group_of = {c.client_id: g for c, g in zip(clients, groups)}
    rows = []
    for name, build in methods.items():
        served, personal = _per_client(clients, build(specs, group_of, **trainer_kwargs), seed,
                                       rounds, last)  # fmt: skip
        for label in dict.fromkeys(specs[c.client_id].label for c in clients):
            ids = [c.client_id for c in clients if specs[c.client_id].label == label]
            rows.append({"method": name, "size": label, "family": family, "seed": seed,
                         "n_train": n_train, "served": float(np.mean([served[k] for k in ids])),
                         "personal": float(np.mean([personal[k] for k in ids]))})  # fmt: skip
    return rows
