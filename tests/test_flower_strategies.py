"""Every method of the grid through Flower's apps, strategy and records, in one process
(``fm.flower.run_loopback``): the same numbers as the kit's engine for the same seed.

The loopback grid sends each message through Flower's wire format to the node's ``ClientApp``
(its ``Context.state`` kept across rounds, as on a SuperNode), so a strategy that needs
something the Flower path does not carry (private client state, per-client messages,
payloads such as prototypes or task vectors, per-client model specs) shows up here as a
difference. It needs no Ray: a method takes seconds. ``test_flower.py`` runs the Ray engine.
"""

import pytest

import fedlab_mm as fm
from fedlab_mm.recipes import METHODS
from tests.flower_check import SETTING, TINY, assert_same_run, kit_run, views_and_recipes

FL = pytest.importorskip("fedlab_mm.flower")
pytest.importorskip("flwr")


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_the_kit_engines_numbers_through_flower(method):
    kit = kit_run(method)
    views, recipes = views_and_recipes([method])  # a fresh server for the Flower run
    state, rows = FL.run_loopback(views[method], recipes[method], TINY.rounds, seed=0)
    assert_same_run(kit, state, rows, recipes[method].strategy)


def test_a_suite_runs_each_method_as_if_alone():
    """Three methods in one Flower run: each message names its recipe and each recipe keeps
    its own Context.state, so LocalOnly's and ALA's clients do not pick up each other's (or
    FedAvg's) models. Sharing the state entries breaks this test (checked)."""
    methods = ["fedavg", "local", "ala"]
    views, recipes = views_and_recipes(methods)
    results = FL.run_loopback(views, recipes, TINY.rounds, seed=0)
    assert list(results) == methods
    for name in methods:
        state, rows = results[name]
        assert_same_run(kit_run(name), state, rows, recipes[name].strategy)
        assert rows.attrs["seconds"] > 0


def test_a_suite_needs_the_clients_of_every_recipe():
    views, recipes = views_and_recipes(["fedavg", "local"])
    with pytest.raises(ValueError, match=r"clients must be a dict with the same names"):
        FL.run_loopback(views["fedavg"], recipes, 1)
    with pytest.raises(ValueError, match=r"recipe=list must be a Recipe or a non-empty dict"):
        FL.run_loopback(views["fedavg"], [recipes["fedavg"]], 1)
    with pytest.raises(ValueError, match=r"the same number of clients; got \[3, 4\]"):
        FL.run_loopback({"fedavg": views["fedavg"], "local": views["local"][:3]}, recipes, 1)


def test_a_node_that_fails_in_round_2_stops_the_run_with_an_error_naming_it():
    """A node that goes down does not hang the server or leave a silently wrong average: the
    round's aggregation sees the error reply and stops, naming the node and its error."""
    clients, server = fm.recipes._clients(SETTING, 0, TINY)
    views, recipe, _ = METHODS["fedavg"].build(clients, server, TINY)
    named = r"round 2: 1 of 4 train replies failed: node 1002 \(client 2\): ConnectionError: node"
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
