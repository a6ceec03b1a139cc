"""The kit's clients and strategies on Flower: for when one machine is no longer enough.

Optional extra: ``pip install -c constraints.txt -e ".[flower]"`` (``flwr[simulation]``, which
brings Ray). The kit's engine (:mod:`fedlab_mm.federated`) already speaks in Flower's terms, so
this module is a thin translation of the same objects:

- :func:`client_app`: a Flower ``ClientApp`` whose ``train``/``evaluate`` handlers build a
  kit :class:`~fedlab_mm.federated.Client` for the node's partition, restore its private state
  (local model, learned weights) from ``Context.state``, run the kit's ``fit`` and reply with
  the kit's :class:`~fedlab_mm.federated.ClientUpdate` as records. A ``query`` handler tells the
  server which kit client a node is.
- :class:`KitStrategy`: a subclass of Flower's message-API ``FedAvg`` that sends every node the
  state the kit strategy chose for its client (one global model, or one per client for
  personalised strategies) and aggregates with the kit strategy's own ``aggregate``.
- :func:`server_app`: a ``ServerApp`` that matches nodes to clients, then runs the rounds.
- :func:`run_simulation`: both apps on Flower's simulation engine; returns the final global
  state and the evaluation metrics, to compare with the kit's :class:`Simulation`.
- a **suite** ``{name: Recipe}`` in place of one recipe runs several kit methods one after
  the other in one Flower run (one Ray start, one ``flwr run``), each message naming its
  recipe; :func:`read_results` reads what the server saved.
- :func:`run_loopback`: both apps in this process through :class:`LoopbackGrid`, every message
  through Flower's wire format (protobuf) and straight to its node: Flower's own apps,
  strategy and records in seconds, without Ray or a network.

The client's randomness is seeded from ``(seed, round, client)`` exactly as in the kit's
engine, and the server aggregates the replies in client order, so the same seed, clients and
strategy give the same global state on both engines (up to float rounding).

Modules: ``apps`` (the apps, :func:`run_simulation`), ``strategy`` (the records,
:class:`KitStrategy`) and ``loopback`` (:class:`LoopbackGrid`, :func:`run_loopback`).
"""

from .apps import client_app, read_results, run_simulation, server_app
from .loopback import LoopbackGrid, run_loopback
from .strategy import INSTALL, KitStrategy, from_record, to_record

__all__ = [
    "INSTALL",
    "KitStrategy",
    "LoopbackGrid",
    "client_app",
    "from_record",
    "read_results",
    "run_loopback",
    "run_simulation",
    "server_app",
    "to_record",
]
