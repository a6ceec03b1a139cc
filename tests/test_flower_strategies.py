"""Every method of the grid through Flower's apps, strategy and records, in one process
(``fm.flower.run_loopback``): the same numbers as the kit's engine for the same seed.

The loopback grid sends each message through Flower's wire format to the node's ``ClientApp``
(its ``Context.state`` kept across rounds, as on a SuperNode), so a strategy that needs
something the Flower path does not carry (private client state, per-client messages,
payloads such as prototypes or task vectors, per-client model specs) shows up here as a
difference. It needs no Ray: a method takes seconds. ``test_flower.py`` runs the Ray engine.
"""

import math

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm.federated import Simulation
from fedlab_mm.recipes import METHODS, Scale

FL = pytest.importorskip("fedlab_mm.flower")
pytest.importorskip("flwr")

TINY = Scale(n_samples=600, num_clients=4, rounds=2, epochs=1, last=1)
SETTING = fm.knobs.check_setting({"missing_rate": 0.3, "alpha": 0.5})


def _both(method, seed=0):
    clients, server = fm.recipes._clients(SETTING, seed, TINY)
    views, recipe, _ = METHODS[method].build(clients, server, TINY)
    kit = Simulation(views, *recipe, seed=seed, progress=False)
    kit.run(TINY.rounds)
    views, flower_recipe, _ = METHODS[method].build(clients, server, TINY)  # a fresh server
    state, rows = FL.run_loopback(views, flower_recipe, TINY.rounds, seed=seed)
    return kit, state, rows, flower_recipe.strategy


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_the_kit_engines_numbers_through_flower(method):
    kit, state, rows, strategy = _both(method)
    # the global model (none for personalised strategies: then both are empty)
    assert list(state) == list(kit.global_state)
    for key, value in kit.global_state.items():
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=1e-4)
    # each client's own model after each round, scored on its test split
    df = kit.history.df
    personal = df[(df.split == "personal") & (df.metric == "accuracy")]
    for (rnd, client), value in personal.set_index(["round", "client"]).value.items():
        row = rows[(rows["round"] == rnd) & (rows["client"] == client)]
        assert row["personal-accuracy"].item() == pytest.approx(value, abs=1e-6), (rnd, client)
    # what the server keeps for each client (personalised strategies)
    served = getattr(kit.strategy, "served", None)
    if served is not None:
        assert sorted(strategy.served) == sorted(served)
        for cid, kept in served.items():
            assert list(strategy.served[cid]) == list(kept)
            for key, value in kept.items():
                torch.testing.assert_close(strategy.served[cid][key], value, atol=1e-5,
                                           rtol=1e-4)  # fmt: skip
    assert not math.isnan(rows["personal-accuracy"].mean())


def test_a_node_that_fails_in_round_2_stops_the_run_with_an_error_naming_it():
    """A node that goes down does not hang the server or leave a silently wrong average: the
    round's aggregation sees the error reply and stops, naming the node and its error."""
    clients, server = fm.recipes._clients(SETTING, 0, TINY)
    views, recipe, _ = METHODS["fedavg"].build(clients, server, TINY)
    named = r"1 of 4 train replies failed: node 1002 \(client 2\): ConnectionError: node 1002 is"
    with pytest.raises(RuntimeError, match=named):
        FL.run_loopback(views, recipe, 2, seed=0, failing={1002: 2})
    # the same run with every node up completes both rounds
    views, recipe, _ = METHODS["fedavg"].build(clients, server, TINY)
    _, rows = FL.run_loopback(views, recipe, 2, seed=0)
    assert sorted(rows["round"].unique()) == [1, 2] and rows["client"].nunique() == 4


def test_a_node_that_stops_answering_is_named_and_never_averaged_around():
    """A node that never replies (a timeout, not an error) would leave Flower's strategy with
    fewer replies than it asked for: the kit's strategy stops instead of averaging the rest."""
    clients, server = fm.recipes._clients(SETTING, 0, TINY)
    views, recipe, _ = METHODS["fedavg"].build(clients, server, TINY)
    with pytest.raises(RuntimeError, match=r"round 2: no train reply from node 1001 \(client 1\)"):
        FL.run_loopback(views, recipe, 2, seed=0, silent={1001: 2})


def test_a_node_without_its_data_is_named_before_the_first_round():
    """Four nodes, a ClientApp that holds three clients: the fourth node's query fails, and
    the server stops before training, naming the node and why."""
    from flwr.app import Context, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    clients, server = fm.recipes._clients(SETTING, 0, TINY)
    views, recipe, _ = METHODS["fedavg"].build(clients, server, TINY)
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    grid = FL.LoopbackGrid(FL.client_app(views[:3], recipe), len(views))
    app = FL.server_app(recipe, len(views), 1, timeout=5.0)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    named = r"1 of 4 query replies failed: node 1003: ValueError: node partition-id=3 is not"
    try:
        with pytest.raises(RuntimeError, match=named):
            app(grid, context)
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def test_the_loopback_grid_pushes_now_and_hands_each_reply_out_once():
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    clients, server = fm.recipes._clients(SETTING, 0, TINY)
    views, recipe, _ = METHODS["fedavg"].build(clients, server, TINY)
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    try:
        grid = FL.LoopbackGrid(FL.client_app(views, recipe), len(views), silent={1003: 0})
        query = [Message(RecordDict({"config": ConfigRecord({})}), n, MessageType.QUERY)
                 for n in grid.get_node_ids()]  # fmt: skip
        ids = grid.push_messages(query)
        assert len(ids) == 4 and len(set(ids)) == 4
        first = grid.pull_messages(ids[:1])
        assert [int(m.content["config"]["client-id"]) for m in first] == [0]
        rest = grid.pull_messages(ids)  # node 1003 is silent: its reply never arrives
        assert sorted(int(m.content["config"]["client-id"]) for m in rest) == [1, 2]
        assert grid.pull_messages(ids) == []  # each reply is handed out once
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
