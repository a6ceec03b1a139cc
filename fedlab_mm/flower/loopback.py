"""Flower's apps, strategy and records in one process: :class:`LoopbackGrid` and
:func:`run_loopback`, for seeing and testing the Flower path in seconds (no Ray, no network)."""

from __future__ import annotations

import tempfile

from .apps import _num_clients, client_app, read_results, server_app
from .strategy import _flwr

__all__ = ["LoopbackGrid", "run_loopback"]

try:  # the extra may be missing: the module still imports, and says what to install on use
    from flwr.serverapp import Grid as _FlowerGrid
except ImportError:  # pragma: no cover - exercised only without the extra
    _FlowerGrid = object


class LoopbackGrid(_FlowerGrid):
    """A Flower ``Grid`` that delivers each message to its node's ``ClientApp`` in this process.

    Node ``k`` has the id ``1000 + k`` and the node config ``{"partition-id": k}``, and keeps its
    own ``Context`` (its ``state`` persists across rounds, as on a SuperNode). Every message and
    every reply crosses Flower's wire format (``RecordDict`` -> protobuf bytes -> ``RecordDict``).
    A ``ClientApp`` that raises gives an error reply naming the exception, as a failed node does
    on a real deployment. ``failing`` maps node ids to the first round from which they fail
    (an error reply); ``silent`` to the first round from which they never answer (a timeout).
    """

    def __init__(self, app, num_nodes: int, failing: dict | None = None,
                 silent: dict | None = None) -> None:  # fmt: skip
        from flwr.app import Context, RecordDict

        self.app, self.failing, self.silent = app, dict(failing or {}), dict(silent or {})
        self.contexts = {
            1000 + k: Context(
                run_id=1,
                node_id=1000 + k,
                node_config={"partition-id": k},
                state=RecordDict(),
                run_config={},
            )  # fmt: skip
            for k in range(num_nodes)
        }
        self._run = None
        self._replies: dict = {}

    def set_run(self, run_id: int) -> None:
        self._run = run_id

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return _flwr()[0].Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self):
        return list(self.contexts)

    def get_nodes(self):
        return list(self.contexts)

    def push_messages(self, messages):
        """Deliver each message to its node now; return their ids (the replies wait for
        :meth:`pull_messages`). A silent node's reply never arrives."""
        ids = []
        for number, msg in enumerate(messages):
            key = msg.metadata.message_id or f"loopback-{len(self._replies)}-{number}"
            reply = self._deliver(msg)
            if reply is not None:
                self._replies[key] = reply
            ids.append(key)
        return ids

    def pull_messages(self, message_ids):
        """The replies that have arrived for ``message_ids`` (each handed out once)."""
        return [self._replies.pop(key) for key in list(message_ids) if key in self._replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(list(messages)))

    def _deliver(self, msg):
        """The node's reply to ``msg``: its ClientApp's, an error reply, or None (silent)."""
        from flwr.supercore.task_identity import TaskIdentity

        app = _flwr()[0]
        node, server = msg.metadata.dst_node_id, TaskIdentity._node_id
        msg = _over_the_wire(msg)
        config = msg.content["config"] if "config" in msg.content else {}
        rnd = int(config.get("server-round", 0))
        if node in self.silent and rnd >= self.silent[node]:
            return None  # no reply at all, as from a node that timed out
        TaskIdentity.node_id = node  # the reply comes from the node
        try:
            if node in self.failing and rnd >= self.failing[node]:
                raise ConnectionError(f"node {node} is down (LoopbackGrid(failing=...))")
            return _over_the_wire(self.app(msg, self.contexts[node]))
        except Exception as error:  # noqa: BLE001 - a failed node replies with an error
            reason = f"{type(error).__name__}: {error}"
            return app.Message(app.Error(code=1, reason=reason), reply_to=msg)
        finally:
            TaskIdentity.node_id = server


def _over_the_wire(msg):
    """``msg`` with its content serialised to Flower's protobuf bytes and read back."""
    if msg.has_error():
        return msg
    from flwr.common import serde
    from flwr.proto.recorddict_pb2 import RecordDict as RecordDictProto

    wire = serde.recorddict_to_proto(msg.content).SerializeToString()
    proto = RecordDictProto()
    proto.ParseFromString(wire)
    msg.content = serde.recorddict_from_proto(proto)
    return msg


def run_loopback(clients, recipe, rounds: int, seed: int = 0, failing=None, silent=None):
    """Run ``recipe`` on ``clients`` through Flower's apps and strategy, in this process.

    The same apps as :func:`run_simulation` (:func:`server_app`, :func:`client_app`), the same
    ``KitStrategy`` and records, but the messages go through a :class:`LoopbackGrid` instead of
    Ray: seconds instead of a Ray start. Returns ``(global_state, history)`` as
    :func:`run_simulation` does (for a suite ``{name: Recipe}``, ``{name: (state, history)}``);
    ``recipe.strategy`` holds the server's state afterwards (``served`` for personalised
    strategies). ``failing``, ``silent``: see :class:`LoopbackGrid`.
    """
    from flwr.app import Context, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    n = _num_clients(clients, recipe, "run_loopback")
    saved_identity = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    grid = LoopbackGrid(client_app(clients, recipe, seed), n, failing, silent)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = server_app(recipe, n, rounds, seed, out=tmp, timeout=60.0)
            app(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                              run_config={}))  # fmt: skip
            return read_results(tmp, recipe)
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved_identity
