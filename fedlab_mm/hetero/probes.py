"""Probes of a FedMosaic run: accuracy by model size, a model without one branch, a forced
gate, and how well P/Q carry across sizes (:func:`pq_transfer`)."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .colora import CoLoRALinear, Gate
from .frames import check_align
from .model import HeteroNet, family_sizes
from .rela import is_pq
from .tasks import task_labels

__all__ = ["accuracy_by_size", "forced_gate", "pq_transfer", "served_accuracy", "without_branch"]


def accuracy_by_size(history, specs: dict, rnd: int | None = None) -> dict[str, float]:
    """Mean personalised accuracy per model size (``HeteroSpec.label``) at round ``rnd``
    (default: the last evaluated round) of a :class:`History`."""
    df = history.df.query("split == 'personal' and metric == 'accuracy'")
    if df.empty:
        raise ValueError("the history has no personalised accuracy yet: run some rounds first")
    rnd = int(df["round"].max()) if rnd is None else rnd
    df = df[df["round"] == rnd]
    if df.empty:
        raise ValueError(
            f"rnd={rnd} was not evaluated; evaluated: {sorted(set(history.df['round']))}"
        )
    sizes = df["client"].map(lambda c: specs[int(c)].label)
    order = sorted({s.label for s in specs.values()}, key=lambda t: [int(v) for v in t.split("x")])
    means = df.groupby(sizes)["value"].mean()
    return {label: float(means[label]) for label in order if label in means}


def without_branch(model: HeteroNet, branch: str) -> HeteroNet:
    """A copy of ``model`` with the ``branch`` ("global" or "local") adapters silenced: their
    ``B`` (dual LoRA) or ``P`` and ``Q`` (Co-LoRA) set to zero; the gates stay as learned."""
    if branch not in ("global", "local"):
        raise ValueError(f"branch={branch!r} must be 'global' or 'local'")
    silenced = (f"b_{branch}", f"p_{branch}", f"q_{branch}")
    state = {k: torch.zeros_like(v) if k.endswith(silenced) else v
             for k, v in model.state_dict().items()}  # fmt: skip
    twin = HeteroNet(model.spec, model.align)  # the same frames and gains
    twin.load_state_dict(state)
    return twin


@contextmanager
def forced_gate(model: nn.Module, value: float):
    """Within the block every gate of ``model`` outputs ``value`` (1: the global branch only,
    0: the local branch only), e.g. to see what each branch knows on its own."""
    if not 0 <= value <= 1:
        raise ValueError(f"value={value} must lie in [0, 1]")
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    for gate in gates:
        gate.forced = float(value)
    try:
        yield model
    finally:
        for gate in gates:
            gate.forced = None


def served_accuracy(clients, strategy) -> dict[int, float]:
    """What RELA decided, scored on its own: each client's model with the global branch the
    server mixed for it (``strategy.served``) and the gate forced to that branch alone,
    on the client's test split. ``{client_id: accuracy}``; clients the server has not served
    yet are left out. (The local branch is still in the model but gated off.)"""
    from ..federated import evaluate

    served = getattr(strategy, "served", None)
    if served is None:
        raise ValueError(f"{type(strategy).__name__} serves no per-client state to score")
    out = {}
    for client in clients:
        state = served.get(client.client_id)
        if not state:
            continue
        model = HeteroNet(client.model.spec, client.model.align)
        model.load_state_dict(client.model.state_dict())
        model.load_state_dict(state, strict=False)
        with forced_gate(model.eval(), 1.0):
            out[client.client_id] = evaluate(model, client.data.test)["accuracy"]
    return out


def pq_transfer(
    dataset,
    task: str,
    n_train: int = 500,
    steps: int = 300,
    seed: int = 0,
    align=None,
    family: str = "independent",
):
    """How well P/Q travel between sizes: for each size, train only the Co-LoRA ``P``/``Q``
    (all else frozen) on ``n_train`` samples of ``task``; then copy them into every size's
    global branch (its local branch empty, the gate at 0.5 as in training) and measure
    accuracy on held-out samples.

    ``align`` replaces :func:`align_frames` for every model built here (see
    :class:`HeteroNet`): a function ``align(spec)`` returning one frame dict per block. It is
    called once per size.

    ``family`` picks the model family (:func:`family_sizes`: ``grown`` sizes share a
    representation).

    Returns a DataFrame, rows = the size P/Q were trained on, columns = the size they run in;
    the diagonal is each size's own accuracy; the first row, ``no P/Q``, is each size with its
    adapters empty (the pretrained digit classifier answering the task).
    """
    import pandas as pd

    n = len(dataset)
    if not 0 < n_train < n:
        raise ValueError(f"n_train={n_train} must lie in (0, {n}) (the rest is the test set)")
    check_align(align)
    if align is not None:  # one call per size, not one per model built
        align = lru_cache(maxsize=None)(align)
    sizes = family_sizes(family)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, test = dataset.subset(order[:n_train]), dataset.subset(order[n_train:])
    x, y = train.modalities["image"], task_labels(train.y, task)
    x_test, y_test = test.modalities["image"], task_labels(test.y, task)
    trained = {}
    with torch.random.fork_rng(), torch.enable_grad():
        for spec in sizes.values():  # fill the frame caches first: built cold, they draw
            spec.build(align)  # random numbers, and the table would depend on what ran before
        torch.manual_seed(seed)
        for name, spec in sizes.items():
            model = spec.build(align).train()
            params = [p for k, p in model.named_parameters() if is_pq(k)]
            opt = torch.optim.Adam(params, lr=1e-2)
            for _ in range(steps):
                idx = torch.randint(0, n_train, (32,))
                loss = F.cross_entropy(model({"image": x[idx]}), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            trained[name] = [m for m in model.layers if isinstance(m, CoLoRALinear)]
    table = {"no P/Q": {}}
    for spec in sizes.values():
        with torch.no_grad():
            hits = spec.build(align).eval()({"image": x_test}).argmax(1) == y_test
        table["no P/Q"][spec.label] = float(hits.float().mean())
    for source, blocks in trained.items():
        row = {}
        for spec in sizes.values():
            model = spec.build(align).eval()
            targets = [m for m in model.layers if isinstance(m, CoLoRALinear)]
            with torch.no_grad():
                for src, dst in zip(blocks, targets):
                    dst.p_global.copy_(src.p_local)
                    dst.q_global.copy_(src.q_local)
                with forced_gate(model, 0.5):  # as in training, where g is about 0.5
                    hits = model({"image": x_test}).argmax(1) == y_test
            row[spec.label] = float(hits.float().mean())
        table[sizes[source].label] = row
    return pd.DataFrame(table).T
