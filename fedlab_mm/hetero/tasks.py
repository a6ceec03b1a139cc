"""Conflicting tasks on the digits, one client per (task, size): FedMosaic's setting."""

from __future__ import annotations

import numpy as np
import torch

from ..partition import ClientData, dirichlet
from .model import SIZES, family_sizes

__all__ = ["ALL_TASKS", "CONFLICTING", "TASKS", "task_clients", "task_labels"]


TASKS = ("digit", "parity", "complement")
ALL_TASKS = ("digit", "parity", "complement", "high")  # notebook 08's four (exercise 2)
#: Three ten-way tasks that disagree on every digit (RELA alone, notebook 08 part 1): no digit
#: has the same label in any two of them, so averaging across tasks can only hurt.
CONFLICTING = ("digit", "complement", "shift2")
_KNOWN = (*ALL_TASKS, "shift2")


def task_labels(y: torch.Tensor, task: str) -> torch.Tensor:
    """Labels of a task on the digits: ``digit`` (0-9), ``parity`` (0 even, 1 odd),
    ``complement`` (9 - digit: the digit that adds up to nine with it), ``high`` (0 for 0-4,
    1 for 5-9), ``shift2`` ((digit + 2) mod 10). All answer through the same 10-way head, so
    the tasks conflict: a seven is "7", "1", "2" or "9" depending on the task. ``digit``,
    ``complement`` and ``shift2`` never agree (9 - d = d + 2 mod 10 has no solution)."""
    if task not in _KNOWN:
        raise ValueError(f"task={task!r} must be one of {_KNOWN}")
    if task == "digit":
        return y.clone()
    if task == "complement":
        return 9 - y
    if task == "shift2":
        return (y + 2) % 10
    return (y % 2) if task == "parity" else (y >= 5).long()


def task_clients(
    dataset,
    tasks=TASKS,
    sizes=("small", "medium", "large", "small", "medium", "large"),
    alpha: float = 5.0,
    train_size: int | None = None,
    seed: int = 0,
    family: str = "independent",
):
    """One client per (task, size): the data set is split evenly at random between tasks,
    then among each task's clients by a Dirichlet over the digits (``alpha``); ``train_size``
    keeps only that many training samples per client (scarce data, where sharing pays);
    ``family`` picks the model family (:func:`family_sizes`).

    Returns ``(clients, specs, groups)``: ClientData list (ids 0..N-1, task-major), a dict
    client id -> HeteroSpec, and the task index of each client.
    """
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        raise ValueError(f"sizes={list(sizes)} must name sizes among {list(SIZES)}")
    by_name = family_sizes(family)
    rng = np.random.default_rng(seed)
    owner = rng.permutation(len(dataset)) % len(tasks)
    clients, specs, groups = [], {}, []
    for t, task in enumerate(tasks):
        part = dataset.subset(torch.from_numpy(np.flatnonzero(owner == t)))
        split = dirichlet(part, len(sizes), alpha=alpha, seed=1000 * seed + t, min_size=20)
        for local in split.clients(part, seed=1000 * seed + t):
            cid = len(clients)
            train = local.train.replace(y=task_labels(local.train.y, task))
            if train_size is not None:
                keep = torch.from_numpy(rng.permutation(len(train))[:train_size])
                train = train.subset(keep)
            test = local.test.replace(y=task_labels(local.test.y, task))
            clients.append(ClientData(cid, train, test))
            specs[cid] = by_name[sizes[local.client_id]]
            groups.append(t)
    return clients, specs, groups
