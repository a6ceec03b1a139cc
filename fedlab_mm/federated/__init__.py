"""The federated engine: one contract for every mechanism in the kit.

It mirrors Flower's Message API so that an adapter can run the same objects there:

- :class:`ClientUpdate`: what a client sends (its shared ``state``, ``num_samples``,
  ``metrics`` and a ``payload`` of extra tensors). The server sees nothing else.
- :class:`Client`: holds its private :class:`~fedlab_mm.partition.ClientData`, its local
  model and a private ``state`` dict (e.g. learned mixing weights) across rounds.
- :class:`LocalTrainer`: the client's learning rule = an init rule + loss terms
  (:mod:`fedlab_mm.losses`) + optimiser.
- :class:`Strategy`: the server's rule; :class:`FedAvg`, :class:`FedProx`, and
  :class:`PersonalizedStrategy` for servers that keep one state per client
  (:class:`LocalOnly`, RELA, FedAlign).
- :class:`Simulation` / :func:`simulate`: rounds, client sampling, evaluation, checkpoints.
- :class:`History`: a tidy table ``(round, client, split, metric, value)``.

Modules: ``client``, ``server``, ``simulation``, ``history`` and ``state`` (cloning,
counting and flattening model states). Every name above is reachable as
``fm.federated.<name>``, with the loss-term contract of :mod:`fedlab_mm.losses`
(:class:`Batch`, :class:`LossTerm`, :class:`CrossEntropy`, :class:`Proximal`).

FedAvg: McMahan et al., AISTATS 2017. FedProx: Li et al., MLSys 2020.
"""

from ..losses import Batch, CrossEntropy, LossTerm, Proximal
from .client import (
    OPTIMIZERS,
    Client,
    ClientUpdate,
    InitRule,
    LocalTrainer,
    Overwrite,
    evaluate,
    per_class_accuracy,
)
from .history import History
from .server import (
    FedAvg,
    FedProx,
    LocalOnly,
    PersonalizedStrategy,
    Strategy,
    client_drift,
    weighted_average,
)
from .simulation import Recipe, Simulation, client_seed, simulate
from .state import clone_state, flatten, state_bytes, unflatten

__all__ = [
    "OPTIMIZERS",
    "Batch",
    "Client",
    "ClientUpdate",
    "CrossEntropy",
    "FedAvg",
    "FedProx",
    "History",
    "InitRule",
    "LocalOnly",
    "LocalTrainer",
    "LossTerm",
    "Overwrite",
    "PersonalizedStrategy",
    "Proximal",
    "Recipe",
    "Simulation",
    "Strategy",
    "client_drift",
    "client_seed",
    "clone_state",
    "evaluate",
    "flatten",
    "per_class_accuracy",
    "simulate",
    "state_bytes",
    "unflatten",
    "weighted_average",
]
