r"""The records and the strategy: :func:`to_record` / :func:`from_record` (kit states as Flower
``ArrayRecord``\ s) and :class:`KitStrategy` (a kit strategy as a Flower message-API strategy),
with the checks that stop a round naming a node that failed or never answered."""

from __future__ import annotations

import time

import torch

from ..federated import ClientUpdate

__all__ = ["INSTALL", "RECIPE_KEY", "KitStrategy", "from_record", "to_record"]

RECIPE_KEY = "kit-recipe"  # the config entry naming the recipe a message belongs to
INSTALL = 'pip install -c constraints.txt -e ".[flower]"'


def _flwr():
    try:
        import flwr  # noqa: F401
    except ImportError as err:
        raise ImportError(f"fedlab_mm.flower needs Flower: {INSTALL}") from err
    from flwr import app, clientapp, serverapp

    return app, clientapp, serverapp


def to_record(state: dict):
    """A dict of tensors as a Flower ``ArrayRecord`` (an empty one for an empty dict)."""
    app, _, _ = _flwr()
    if not state:
        return app.ArrayRecord()
    return app.ArrayRecord(torch_state_dict={k: v.detach().cpu() for k, v in state.items()})


def from_record(record) -> dict[str, torch.Tensor]:
    """A Flower ``ArrayRecord`` back as a dict of tensors (keys and dtypes kept)."""
    return {k: v.clone() for k, v in record.to_torch_state_dict().items()} if record else {}


try:  # the extra may be missing: the module still imports, and says what to install on use
    from flwr.serverapp.strategy import FedAvg as _FlowerFedAvg
except ImportError:  # pragma: no cover - exercised only without the extra
    _FlowerFedAvg = object


class KitStrategy(_FlowerFedAvg):
    """A kit strategy as a Flower message-API strategy: Flower's ``FedAvg`` with the kit
    strategy's messages (one global state, or one per client) and its ``aggregate``.

    ``client_of`` maps Flower node ids to kit client ids; ``global_state`` is the kit's global
    state (``{}`` for personalised strategies without one); ``history`` collects the clients'
    evaluation rows.
    """

    def __init__(self, strategy, global_state: dict, client_of: dict, name: str = "") -> None:
        _flwr()
        n = len(client_of)
        super().__init__(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
        self.kit, self.global_state, self.client_of = strategy, global_state, client_of
        self.name = name  # the recipe's name in a suite (sent with every message), else ""
        self.history: list[dict] = []

    def _messages(self, rnd: int, config, message_type: str):
        app, _, _ = _flwr()
        config["server-round"] = rnd
        if self.name:
            config[RECIPE_KEY] = self.name
        out = []
        for node, cid in sorted(self.client_of.items(), key=lambda kv: kv[1]):
            state = self.kit.message(cid, self.global_state)
            content = app.RecordDict({"arrays": to_record(state), "config": config})
            out.append(app.Message(content, node, message_type))
        self._sent = out  # the grid fills in their ids when it sends them
        return out

    def _sent_to(self) -> dict:
        """Sent message id -> destination node: an error the SuperLink writes for an
        unreachable node comes from the SuperLink, so its reply-to id names the node."""
        return {(m.metadata.message_id or m.object_id): m.metadata.dst_node_id
                for m in getattr(self, "_sent", [])}  # fmt: skip

    def configure_train(self, server_round, arrays, config, grid):
        return self._messages(server_round, config, _flwr()[0].MessageType.TRAIN)

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self._messages(server_round, config, _flwr()[0].MessageType.EVALUATE)

    def aggregate_train(self, server_round, replies):
        updates = []
        for msg in _checked(replies, "train", self._sent_to(), self.client_of, server_round):
            metrics = dict(msg.content["metrics"])
            cid, n = int(metrics.pop("client-id")), int(metrics.pop("num-examples"))
            state, payload = from_record(msg.content["arrays"]), from_record(msg.content["payload"])
            updates.append(ClientUpdate(cid, state, n, metrics, payload))
        _all_replied(server_round, "train", {u.client_id for u in updates}, self.client_of)
        updates.sort(key=lambda u: u.client_id)  # the kit's order: sums round the same way
        self.global_state = self.kit.aggregate(server_round, self.global_state, updates)
        return to_record(self.global_state), None

    def aggregate_evaluate(self, server_round, replies):
        for msg in _checked(replies, "evaluate", self._sent_to(), self.client_of, server_round):
            metrics = dict(msg.content["metrics"])
            cid = int(metrics.pop("client-id"))
            self.history.append({"round": server_round, "client": cid, **metrics})
        return _flwr()[0].MetricRecord({})


def _all_replied(rnd: int, what: str, replied: set, client_of: dict) -> None:
    """Refuse to aggregate over fewer clients than were asked (a node that timed out)."""
    missing = {node: cid for node, cid in client_of.items() if cid not in replied}
    if missing:
        named = ", ".join(f"node {n} (client {c})" for n, c in sorted(missing.items()))
        raise RuntimeError(
            f"round {rnd}: no {what} reply from {named}; the kit's strategy averages over every "
            "client it was given, so it stops instead of averaging over the others"
        )


def _checked(replies, what: str, sent_to=None, client_of=None, rnd=None) -> list:
    """The replies, or a ``RuntimeError`` naming each node that answered with an error."""
    replies, sent_to, client_of = list(replies), sent_to or {}, client_of or {}
    errors = [m for m in replies if m.has_error()]
    if errors:
        named = []
        for m in errors:
            node = sent_to.get(m.metadata.reply_to_message_id, m.metadata.src_node_id)
            client = f" (client {client_of[node]})" if node in client_of else ""
            named.append(f"node {node}{client}: {m.error.reason}")
        reasons = "; ".join(named)
        when = f"round {rnd}: " if rnd is not None else ""
        raise RuntimeError(
            f"{when}{len(errors)} of {len(replies)} {what} replies failed: {reasons}"
        )
    return replies


def _match_nodes(grid, num_clients: int, timeout: float) -> dict[int, int]:
    """Wait for ``num_clients`` nodes and ask each which kit client it is."""
    app, _, _ = _flwr()
    start = time.monotonic()
    while len(nodes := list(grid.get_node_ids())) < num_clients:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{len(nodes)} of {num_clients} nodes connected in {timeout} s")
        time.sleep(0.2)
    query = [
        app.Message(app.RecordDict({"config": app.ConfigRecord({})}), n, app.MessageType.QUERY)
        for n in nodes
    ]
    replies = _checked(grid.send_and_receive(query, timeout=timeout), "query")
    client_of = {m.metadata.src_node_id: int(m.content["config"]["client-id"]) for m in replies}
    if len(set(client_of.values())) != len(client_of):
        raise ValueError(f"two nodes claim the same client: {client_of}")
    return client_of
