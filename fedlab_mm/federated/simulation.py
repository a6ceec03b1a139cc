"""Rounds on one machine: :class:`Simulation` / :func:`simulate`, and :class:`Recipe`, the three
things a method is (``simulate(clients, *recipe, rounds=...)``).

Randomness is drawn from ``(seed, round, client)``, never from a running stream, so a run
resumed from a checkpoint continues exactly as an uninterrupted one."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..data import MultimodalDataset
from ..models import Specs, build_model
from ..partition import ClientData
from .client import Client, LocalTrainer, evaluate
from .history import History
from .server import FedAvg, Strategy
from .state import clone_state, flatten, state_bytes, unflatten

__all__ = ["Recipe", "Simulation", "client_seed", "simulate"]


class Recipe(NamedTuple):
    """A federated method as the three things the engine takes:
    ``simulate(clients, *recipe, rounds=...)``."""

    spec: Specs
    trainer: LocalTrainer
    strategy: Strategy


def client_seed(*parts: int) -> int:
    """The torch seed a client uses in a round: ``client_seed(seed, round, client_id)``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class Simulation:
    """A federated run on one machine: build it, :meth:`run` rounds, :meth:`save`, resume.

    Parameters
    ----------
    clients : list of ClientData
        From :meth:`fedlab_mm.partition.Partition.clients`.
    spec : ModelSpec, or a mapping client id -> spec
        Any :class:`~fedlab_mm.models.ModelSpecLike`; one per client builds heterogeneous
        models (then the strategy must be personalised: there is no global model).
    trainer : LocalTrainer
    strategy : Strategy
    clients_per_round : int, optional
        Sampled uniformly each round (default: all).
    seed : int
    eval_every : int
        Evaluate every this many rounds (and always after the last one).
    global_test : MultimodalDataset, optional
        The server's held-out test set.
    progress : bool
        Show a progress bar over rounds.
    """

    def __init__(
        self,
        clients,
        spec: Specs,
        trainer: LocalTrainer,
        strategy: Strategy,
        clients_per_round: int | None = None,
        seed: int = 0,
        eval_every: int = 1,
        global_test=None,
        progress: bool = True,
    ) -> None:
        if isinstance(clients, MultimodalDataset):
            raise TypeError(
                "simulate needs a list of clients: partition the data first, e.g. "
                "fm.partition.dirichlet(ds, 10, alpha=0.5).clients(ds)"
            )
        clients = list(clients)
        if not clients or not all(isinstance(c, ClientData) for c in clients):
            raise TypeError("clients must be a non-empty list of ClientData")
        ids = [c.client_id for c in clients]
        if len(set(ids)) != len(ids):
            raise ValueError("client ids must be distinct")
        per_client = isinstance(spec, Mapping)  # heterogeneous models: client id -> spec
        if per_client:
            missing = sorted(set(ids) - set(spec))
            if missing:
                raise ValueError(f"spec has no entry for clients {missing}")
            if strategy.has_global:
                raise ValueError(
                    f"per-client specs need a personalised strategy (no global model); "
                    f"{type(strategy).__name__} averages one model"
                )
        self._spec_of = (lambda cid: spec[cid]) if per_client else (lambda cid: spec)
        for c in clients:
            names = self._spec_of(c.client_id).names
            if c.train.names != names:
                raise ValueError(
                    f"client {c.client_id} has modalities {c.train.names}, "
                    f"the model spec expects {names}"
                )
        n = len(clients)
        k = n if clients_per_round is None else clients_per_round
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise ValueError(
                f"clients_per_round={clients_per_round!r} must be in 1..{n} (there are {n} clients)"
            )
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
            raise ValueError(f"eval_every={eval_every!r} must be an integer >= 1")
        self.spec, self.trainer, self.strategy = spec, trainer, strategy
        self.clients = [Client(c, self._spec_of(c.client_id), trainer) for c in clients]
        self.by_id = {c.client_id: c for c in self.clients}
        self.clients_per_round = int(k)
        self.seed, self.eval_every = int(seed), eval_every
        self.global_test, self.progress = global_test, progress
        if per_client:  # no shared state; clients of one spec start from the same weights
            self.global_state = {}
            for client in self.clients:
                client.model = build_model(client.spec, seed=self.seed)
            self._scratch = None
        else:
            self.global_state = clone_state(build_model(spec, seed=self.seed).state_dict())
            for client in self.clients:  # everyone starts from the same weights
                client.model.load_state_dict(self.global_state)
            self._scratch = build_model(spec)
        self.round = 0
        self.history = History()
        strategy.setup(self.global_state, ids)

    # ------------------------------------------------------------------ rounds
    def run(self, rounds: int) -> History:
        """Run ``rounds`` more rounds; return the history so far."""
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
            raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
        from tqdm.auto import tqdm

        last = self.round + int(rounds)
        bar = tqdm(
            range(self.round + 1, last + 1),
            desc=self.strategy.name,
            leave=False,
            disable=not self.progress,
        )
        for rnd in bar:
            self.step(rnd, evaluate_now=(rnd % self.eval_every == 0 or rnd == last))
            shown = self._progress_numbers(rnd)
            if shown:
                bar.set_postfix(shown)
        return self.history

    def step(self, rnd: int, evaluate_now: bool = True) -> None:
        """One round: sample, send, train locally, aggregate, (evaluate), log."""
        start = time.perf_counter()
        rng = np.random.default_rng([self.seed, rnd])
        ids = sorted(self.by_id)
        chosen = ids
        if self.clients_per_round < len(ids):
            chosen = sorted(rng.choice(ids, size=self.clients_per_round, replace=False).tolist())
        extra = self.strategy.client_losses()
        updates, down, up = [], 0, 0
        for cid in chosen:
            received = self.strategy.message(cid, self.global_state)
            update = self.by_id[cid].fit(received, rnd, client_seed(self.seed, rnd, cid), extra)
            if self.strategy.communicates:
                down += state_bytes(received)
                up += state_bytes(update.state) + state_bytes(update.payload)
            updates.append(update)
            for name, value in update.metrics.items():
                if name.startswith("init_"):  # the model right after the init rule
                    self.history.log(rnd, cid, "personal_init", name[5:], value)
                else:
                    self.history.log(rnd, cid, "train", name, value)
        self.global_state = self.strategy.aggregate(rnd, self.global_state, updates)
        self.round = rnd
        seconds = time.perf_counter() - start
        for metric, value in (
            ("bytes_up", up),
            ("bytes_down", down),
            ("seconds", seconds),
            ("clients", len(chosen)),
        ):
            self.history.log(rnd, -1, "system", metric, value)
        if evaluate_now:
            self.evaluate(rnd)

    def evaluate(self, rnd: int) -> None:
        """Log personal, global and server-test metrics for the current round."""
        loaded = None  # the state now in the scratch model (FedAvg sends everyone the same)
        for client in self.clients:
            if client.rounds_trained > 0:
                for metric, value in client.evaluate().items():
                    self.history.log(rnd, client.client_id, "personal", metric, value)
            if self.strategy.has_global:
                state = self.strategy.message(client.client_id, self.global_state)
                if state is not loaded:
                    self._scratch.load_state_dict(state, strict=False)
                    loaded = state
                for metric, value in evaluate(self._scratch, client.data.test).items():
                    self.history.log(rnd, client.client_id, "global", metric, value)
        if self.strategy.has_global and self.global_test is not None:
            if self.global_state is not loaded:
                self._scratch.load_state_dict(self.global_state, strict=False)
            for metric, value in evaluate(self._scratch, self.global_test).items():
                self.history.log(rnd, -1, "server_test", metric, value)

    def served_model(self, client_id: int) -> torch.nn.Module:
        """A fresh copy of the model the server holds for ``client_id`` (what it would send
        next round): the global model for FedAvg, a personal one for personalised servers."""
        if client_id not in self.by_id:
            raise ValueError(f"client_id={client_id!r} is not one of {sorted(self.by_id)}")
        model = build_model(self._spec_of(client_id), seed=self.seed)
        model.load_state_dict(self.global_state, strict=False)
        model.load_state_dict(self.strategy.message(client_id, self.global_state), strict=False)
        return model

    def _progress_numbers(self, rnd: int) -> dict:
        """Accuracies and the mean local training loss of round ``rnd`` for the progress bar."""
        rows = []
        for row in reversed(self.history.records):  # a round's rows are the last ones logged
            if row[0] != rnd:
                break
            rows.append(row)
        out = {}
        for split in ("server_test", "personal"):
            acc = [r[4] for r in rows if r[2] == split and r[3] == "accuracy"]
            if acc:
                out[f"{split} acc"] = f"{np.mean(acc):.3f}"
        per_client: dict[int, float] = {}
        for r in rows:
            if r[2] == "train" and r[3].startswith("loss_"):
                per_client[r[1]] = per_client.get(r[1], 0.0) + r[4]
        if per_client:
            out["loss"] = f"{np.mean(list(per_client.values())):.3f}"
        return out

    # ------------------------------------------------------------------ checkpoints
    def save(self, run_dir) -> Path:
        """Write the run to ``run_dir``: ``state.safetensors`` (all tensors) and
        ``run.json`` (settings and history). No pickle anywhere."""
        from safetensors.torch import save_file

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"global/{k}": v for k, v in self.global_state.items()}
        models = flatten({c.client_id: c.model.state_dict() for c in self.clients})
        private = flatten({c.client_id: c.state for c in self.clients})
        tensors.update({f"model/{k}": v for k, v in models.items()})
        tensors.update({f"private/{k}": v for k, v in private.items()})
        tensors.update({f"strategy/{k}": v for k, v in self.strategy.state_dict().items()})
        save_file(
            {k: v.detach().contiguous().clone() for k, v in tensors.items()},
            str(run_dir / "state.safetensors"),
        )
        meta = {
            "round": self.round,
            "seed": self.seed,
            "clients_per_round": self.clients_per_round,
            "eval_every": self.eval_every,
            "spec": _spec_json(self.spec),
            "strategy": repr(self.strategy),
            "client_ids": sorted(self.by_id),
            "rounds_trained": {str(c.client_id): c.rounds_trained for c in self.clients},
            "history": json.loads(self.history.to_json()),
        }
        (run_dir / "run.json").write_text(json.dumps(meta))
        return run_dir

    @classmethod
    def resume(
        cls,
        run_dir,
        clients,
        spec: Specs,
        trainer: LocalTrainer,
        strategy: Strategy,
        global_test=None,
        progress: bool = True,
    ) -> Simulation:
        """Rebuild a saved run; the same ``clients``, ``spec``, ``trainer`` and a fresh
        ``strategy`` of the same kind must be passed (code is never unpickled)."""
        from safetensors.torch import load_file

        run_dir = Path(run_dir)
        meta = json.loads((run_dir / "run.json").read_text())
        if meta["spec"] != _spec_json(spec):
            raise ValueError("the model spec differs from the checkpoint's; pass the same spec")
        if repr(strategy) != meta["strategy"]:
            raise ValueError(f"the checkpoint was made with {meta['strategy']}, not {strategy!r}")
        sim = cls(
            clients,
            spec,
            trainer,
            strategy,
            meta["clients_per_round"],
            meta["seed"],
            meta["eval_every"],
            global_test,
            progress,
        )
        if sorted(sim.by_id) != meta["client_ids"]:
            raise ValueError("the clients differ from the checkpoint's")
        tensors = load_file(str(run_dir / "state.safetensors"))
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            kind, rest = key.split("/", 1)
            groups.setdefault(kind, {})[rest] = value
        sim.global_state = groups.get("global", {})
        models = unflatten(groups.get("model", {}))
        private = unflatten(groups.get("private", {}))
        for c in sim.clients:
            c.model.load_state_dict(models[c.client_id])
            c.state = private.get(c.client_id, {})
            c.rounds_trained = meta["rounds_trained"][str(c.client_id)]
        strategy.load_state_dict(groups.get("strategy", {}))
        sim.round = meta["round"]
        sim.history = History(meta["history"]["records"])
        return sim


def _spec_json(spec) -> dict:
    """A spec (or a dict client id -> spec) as plain JSON data, for checkpoints."""
    if isinstance(spec, Mapping):
        return {str(k): _spec_json(v) for k, v in sorted(spec.items())}
    return json.loads(json.dumps(spec.to_dict()))


def simulate(
    clients,
    spec: Specs,
    trainer: LocalTrainer | None = None,
    strategy: Strategy | None = None,
    rounds: int = 10,
    clients_per_round: int | None = None,
    seed: int = 0,
    eval_every: int = 1,
    global_test=None,
    progress: bool = True,
) -> History:
    """Run a federated simulation and return its :class:`History`.

    Examples
    --------
    >>> rest, test = fm.partition.holdout(ds, 0.2)                          # doctest: +SKIP
    >>> clients = fm.partition.dirichlet(rest, 10, alpha=0.5).clients(rest)  # doctest: +SKIP
    >>> spec = fm.models.ModelSpec.from_dataset(ds)                         # doctest: +SKIP
    >>> history = simulate(clients, spec, strategy=FedAvg(), global_test=test)  # doctest: +SKIP
    """
    sim = Simulation(
        clients,
        spec,
        trainer or LocalTrainer(),
        strategy or FedAvg(),
        clients_per_round,
        seed,
        eval_every,
        global_test,
        progress,
    )
    return sim.run(rounds)
