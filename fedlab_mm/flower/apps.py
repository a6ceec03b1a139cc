"""The Flower apps: :func:`client_app`, :func:`server_app` (one recipe or a suite of them),
:func:`read_results`, and :func:`run_simulation` on Flower's simulation engine (the records
and :class:`KitStrategy` are in :mod:`.strategy`). The package docstring
(:mod:`fedlab_mm.flower`) says how they fit together and why the numbers match the kit's engine.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ..federated import Client, Recipe, client_seed
from ..federated import evaluate as score
from ..models import build_model
from .strategy import RECIPE_KEY, KitStrategy, _flwr, _match_nodes, from_record, to_record

__all__ = ["client_app", "read_results", "run_simulation", "server_app"]


def _spec_of(spec, client_id: int):
    return spec[client_id] if isinstance(spec, Mapping) else spec


# ----------------------------------------------------------------- client side
def _suite(recipe) -> dict:
    """``{name: Recipe}``: a single :class:`Recipe` is the suite ``{"": recipe}``."""
    if isinstance(recipe, Recipe):
        return {"": recipe}
    if (
        isinstance(recipe, Mapping)
        and recipe
        and all(isinstance(r, Recipe) for r in recipe.values())
    ):
        if any(not isinstance(n, str) or not n for n in recipe):
            raise ValueError(f"recipe names {list(recipe)} must be non-empty strings")
        return dict(recipe)
    raise ValueError(
        f"recipe={type(recipe).__name__} must be a Recipe or a non-empty dict of names to Recipes"
    )


def _per_recipe(clients, suite: dict):
    """What ``client_app`` was given as ``{name: list of clients}``, or a loader."""
    if callable(clients):
        return clients
    if list(suite) == [""]:
        return {"": list(clients)}
    if not isinstance(clients, Mapping) or set(clients) != set(suite):
        raise ValueError(
            f"with a suite of recipes {sorted(suite)}, clients must be a dict with the same names "
            f"(each a list of ClientData) or a loader; got {type(clients).__name__}"
        )
    return {name: list(clients[name]) for name in suite}


def _num_clients(clients, recipe, runner: str) -> int:
    """How many clients every recipe of ``recipe`` has (the same for all, at least one)."""
    given = _per_recipe(clients, _suite(recipe))
    if callable(given):
        raise ValueError(f"{runner} needs the clients themselves, not a loader")
    sizes = {len(c) for c in given.values()}
    if sizes == {0}:
        raise ValueError("clients is empty: give at least one ClientData")
    if len(sizes) != 1:
        raise ValueError(f"every recipe needs the same number of clients; got {sorted(sizes)}")
    return sizes.pop()


def client_app(clients, recipe, seed: int = 0):
    """A Flower ``ClientApp`` running the kit's clients.

    ``clients`` is either the list of every client's data, node ``k`` (its ``partition-id``
    in the node config) being ``clients[k]``, or a function ``load(node_config) ->
    ClientData`` that a deployment's node calls to load **only its own** data (e.g. from a
    path in its node config). Each message rebuilds the kit client and restores what it kept
    from earlier rounds from ``Context.state``, so personal models and learned mixing weights
    persist as they do in the kit's engine.

    ``recipe`` may also be a **suite**, ``{name: Recipe}``: one Flower run then runs several
    kit methods one after the other (see :func:`server_app`). Each message names its recipe,
    each recipe keeps its own ``Context.state`` entries, and ``clients`` is ``{name: list}``
    (each method may see its own view of the data) or a loader returning ``{name: ClientData}``.
    """
    app, clientapp, _ = _flwr()
    suite = _suite(recipe)
    given = _per_recipe(clients, suite)
    single = list(suite) == [""]

    def node_data(context, name):
        if callable(given):
            data = given(dict(context.node_config))
            return data if single else data[name]
        index = int(context.node_config.get("partition-id", -1))
        if not 0 <= index < len(given[name]):
            raise ValueError(
                f"node partition-id={index} is not a client index 0..{len(given[name]) - 1}"
            )
        return given[name][index]

    def named(msg) -> str:
        config = msg.content["config"] if "config" in msg.content else {}
        name = str(config.get(RECIPE_KEY, next(iter(suite))))
        if name not in suite:
            raise ValueError(f"a message for recipe {name!r}; this ClientApp runs {list(suite)}")
        return name

    def restore(context, name, received=None) -> Client:
        spec, trainer, _ = suite[name]
        data = node_data(context, name)
        client = Client(data, _spec_of(spec, data.client_id), trainer)
        key = f"{name}:" if name else ""
        if f"{key}model" in context.state:
            client.model.load_state_dict(from_record(context.state[f"{key}model"]))
            client.state = from_record(context.state[f"{key}private"])
            client.rounds_trained = int(context.state[f"{key}meta"]["rounds"])
        else:  # first contact: the kit's seeded start, then whatever the server sent
            client.model = build_model(client.spec, seed=seed)
            if received:
                client.model.load_state_dict(received, strict=False)
        return client

    def keep(client: Client, context, name) -> None:
        key = f"{name}:" if name else ""
        context.state[f"{key}model"] = to_record(client.model.state_dict())
        context.state[f"{key}private"] = to_record(client.state)
        context.state[f"{key}meta"] = app.ConfigRecord({"rounds": client.rounds_trained})

    flower = clientapp.ClientApp()

    @flower.query()
    def query(msg, context):
        client = restore(context, named(msg))
        reply = app.ConfigRecord({"client-id": client.client_id})
        return app.Message(app.RecordDict({"config": reply}), reply_to=msg)

    @flower.train()
    def train(msg, context):
        name = named(msg)
        received = from_record(msg.content["arrays"])
        rnd = int(msg.content["config"]["server-round"])
        client = restore(context, name, received)
        losses = suite[name].strategy.client_losses()
        update = client.fit(received, rnd, client_seed(seed, rnd, client.client_id), losses)
        keep(client, context, name)
        metrics = {"num-examples": update.num_samples, "client-id": client.client_id}
        metrics.update({k: float(v) for k, v in update.metrics.items()})
        content = {"arrays": to_record(update.state), "payload": to_record(update.payload)}
        content["metrics"] = app.MetricRecord(metrics)
        return app.Message(app.RecordDict(content), reply_to=msg)

    @flower.evaluate()
    def evaluate(msg, context):
        client = restore(context, named(msg))
        metrics = {"num-examples": len(client.data.test), "client-id": client.client_id}
        metrics.update({f"personal-{k}": v for k, v in client.evaluate().items()})
        received = from_record(msg.content["arrays"])
        if received:
            served = build_model(client.spec)
            served.load_state_dict(received, strict=False)
            metrics.update({f"served-{k}": v for k, v in score(served, client.data.test).items()})
        return app.Message(app.RecordDict({"metrics": app.MetricRecord(metrics)}), reply_to=msg)

    return flower


def server_app(recipe, num_clients: int, rounds: int, seed: int = 0, out=None,
               timeout: float = 600.0):  # fmt: skip
    """A Flower ``ServerApp`` running ``recipe``'s strategy for ``rounds`` rounds.

    The initial global state is the kit's (``build_model(spec, seed)``), so both engines start
    from the same weights. With ``out`` (a folder), the final global state is saved there as
    ``global.safetensors`` and the clients' evaluation rows, the state's key order and the
    run's seconds as ``history.json``.

    With a suite ``{name: Recipe}`` (see :func:`client_app`), the nodes are matched once and
    the recipes run one after the other, each from its own start, ``rounds`` rounds each;
    each one's results go to ``out/<name>/``. One Flower run (one Ray start, one ``flwr run``)
    then compares many methods.
    """
    _, _, serverapp = _flwr()
    from safetensors.torch import save_file

    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
    suite = _suite(recipe)
    flower = serverapp.ServerApp()

    @flower.main()
    def main(grid, context):
        client_of = _match_nodes(grid, num_clients, timeout)
        for name, (spec, _, strategy) in suite.items():
            t0 = time.perf_counter()
            initial = (
                {} if isinstance(spec, Mapping) else dict(build_model(spec, seed=seed).state_dict())
            )
            strategy.setup(initial, sorted(client_of.values()))
            fl = KitStrategy(strategy, initial, client_of, name=name)
            fl.start(grid, initial_arrays=to_record(initial), num_rounds=rounds, timeout=timeout)
            if out is None:
                continue
            folder = Path(out) / name
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in fl.global_state.items()},
                      folder / "global.safetensors")  # fmt: skip
            order = list(fl.global_state)  # safetensors stores keys sorted; keep the model's order
            seconds = time.perf_counter() - t0
            (folder / "history.json").write_text(
                json.dumps({"rows": fl.history, "keys": order, "seconds": seconds})
            )

    return flower


def read_results(out, recipe) -> dict | tuple:
    """What :func:`server_app` saved in ``out``: ``(global_state, history)``, or for a suite
    ``{name: (global_state, history)}``. ``history`` is a DataFrame with the run's seconds in
    ``history.attrs["seconds"]``."""
    import pandas as pd
    from safetensors.torch import load_file

    results = {}
    for name in _suite(recipe):
        folder = Path(out) / name
        if not (folder / "global.safetensors").exists():
            raise RuntimeError(
                f"the Flower run left no result in {folder}; rerun with verbose=True"
            )
        saved = json.loads((folder / "history.json").read_text())
        tensors = load_file(folder / "global.safetensors")
        history = pd.DataFrame(saved["rows"])
        history.attrs["seconds"] = saved.get("seconds")
        results[name] = ({k: tensors[k] for k in saved["keys"]}, history)
    return results[""] if list(results) == [""] else results


def run_simulation(clients, recipe, rounds: int, seed: int = 0, num_cpus: int = 1,
                   verbose: bool = False):  # fmt: skip
    """Run ``recipe`` on ``clients`` on Flower's simulation engine (Ray).

    Returns ``(global_state, history)``: the final global state (a dict of tensors, ``{}`` for
    personalised strategies) and a pandas DataFrame of each client's evaluation per round
    (``personal-accuracy``: its own model; ``served-accuracy``: what the server sent it).
    With a suite ``{name: Recipe}`` and ``clients`` as ``{name: list}``, every recipe runs in
    the same Flower run (one Ray start) and the result is ``{name: (global_state, history)}``.
    Ray starts in about 10-40 s; each client gets ``num_cpus`` CPUs.
    """
    from flwr.simulation import run_simulation as flower_run

    n = _num_clients(clients, recipe, "run_simulation")
    with tempfile.TemporaryDirectory() as tmp:
        flower_run(
            server_app=server_app(recipe, n, rounds, seed, out=tmp),
            client_app=client_app(clients, recipe, seed),
            num_supernodes=n,
            backend_config={"client_resources": {"num_cpus": num_cpus, "num_gpus": 0.0}},
            verbose_logging=verbose,
        )
        return read_results(tmp, recipe)
