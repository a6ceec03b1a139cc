"""The client side of the engine: what a client sends, how it learns, how it is scored.

- :class:`ClientUpdate`: the only thing the server ever receives.
- :class:`InitRule` (:class:`Overwrite`): how local training starts from what the server sent.
- :class:`LocalTrainer`: init rule + loss terms (:mod:`fedlab_mm.losses`) + optimiser.
- :class:`Client`: private data, a local model and private state across rounds.
- :func:`evaluate`, :func:`per_class_accuracy`: how a model is scored on a data set."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..losses import Batch, CrossEntropy, LossTerm
from ..models import ModelSpecLike, build_model
from ..partition import ClientData

__all__ = [
    "OPTIMIZERS",
    "Client",
    "ClientUpdate",
    "InitRule",
    "LocalTrainer",
    "Overwrite",
    "evaluate",
    "per_class_accuracy",
]


@dataclass
class ClientUpdate:
    """What a client uploads after local training. The server receives only these."""

    client_id: int
    state: dict[str, torch.Tensor]
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    payload: dict[str, torch.Tensor] = field(default_factory=dict)


# --------------------------------------------------------------------------- init rules
class InitRule(ABC):
    """How a client starts local training from the state the server sent."""

    @abstractmethod
    def __call__(self, client: Client, received: dict[str, torch.Tensor], rnd: int) -> None:
        """Set ``client.model`` (and maybe ``client.state``) from what was received."""


class Overwrite(InitRule):
    """Plain federated learning: the received values replace the local ones."""

    def __call__(self, client: Client, received: dict[str, torch.Tensor], rnd: int) -> None:
        client.model.load_state_dict(received, strict=False)

    def __repr__(self) -> str:
        return "Overwrite()"


# --------------------------------------------------------------------------- trainer
OPTIMIZERS = ("sgd", "adam")


@dataclass
class LocalTrainer:
    """The client's learning rule: an init rule, loss terms and optimiser settings.

    Parameters
    ----------
    losses : list of LossTerm
        Summed each step. Default: ``[CrossEntropy()]``.
    init : InitRule
        Default: :class:`Overwrite`.
    epochs, batch_size : int
    lr, momentum, weight_decay : float
        ``momentum`` applies to SGD only.
    optimizer : {"sgd", "adam"}
        A fresh optimiser every round (its moments are not carried across rounds or sent).
        SGD (the default) is the textbook FedAvg client and the fastest per step; for the
        digits CNNs use ``optimizer="adam", lr=1e-3``, which there reaches 0.91 test accuracy
        in 10 IID rounds where SGD at 0.05 is still below 0.5.
    upload : callable(name) -> bool, optional
        Which state keys the client sends (default: all of them).
    payload : callable(client) -> dict of tensors, optional
        Extra tensors the client uploads after training (prototypes, counts, ...), in
        :attr:`ClientUpdate.payload`; counted in the uplink bytes.
    max_grad_norm : float, optional
        Clip the gradient norm of every step to this value (default: no clipping). SGD at
        lr 0.05 with momentum can diverge when most batches hold only a few labels (seen:
        synthetic data, 5% labels, a loss of 1e9 in round 9); ``max_grad_norm=5`` avoids it.
    """

    losses: list = field(default_factory=lambda: [CrossEntropy()])
    init: InitRule = field(default_factory=Overwrite)
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    upload: Callable[[str], bool] | None = None
    max_grad_norm: float | None = None
    payload: Callable | None = None

    def __post_init__(self) -> None:
        if not self.losses:
            raise ValueError("losses must hold at least one LossTerm")
        for term in self.losses:
            if not isinstance(term, LossTerm):
                raise TypeError(f"losses must be LossTerm objects, got {type(term).__name__}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} must be one of {OPTIMIZERS}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum} must lie in [0, 1)")
        if self.payload is not None and not callable(self.payload):
            raise TypeError(f"payload must be callable(client) -> dict, got {self.payload!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm} must be > 0 (or None)")

    def make_optimizer(self, params):
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                foreach=True,
            )
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, foreach=True)

    def train(self, client: Client, received: dict, rnd: int, extra_losses=()) -> dict[str, float]:
        """Run the local epochs in place on ``client.model``; return mean loss per term."""
        model = client.model
        data = client.data.train
        losses = [*self.losses, *extra_losses]
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = self.make_optimizer(params)
        xs, present = data.modalities, data.available.float()
        y, labeled = data.y, data.labeled
        received_detached = {k: v.detach() for k, v in received.items()}
        sums = dict.fromkeys([t.name for t in losses], 0.0)
        steps = 0
        model.train()
        n = len(data)
        for _ in range(self.epochs):
            order = torch.randperm(n)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                batch_x = {m: x[idx] for m, x in xs.items()}
                batch_present = present[idx]
                feats = model.features(batch_x, batch_present)
                logits = feats["logits"]
                batch = Batch(
                    model,
                    batch_x,
                    batch_present,
                    y[idx],
                    labeled[idx],
                    logits,
                    received_detached,
                    client.state,
                    feats,
                )
                total = logits.new_zeros(())
                for term in losses:
                    value = term(batch)
                    number = value.item()
                    if not math.isfinite(number):
                        raise FloatingPointError(
                            f"round {rnd}, client {client.client_id}: loss term "
                            f"'{term.name}' is {number} (lower lr or check the inputs)"
                        )
                    sums[term.name] += number
                    total = total + value
                steps += 1
                if total.requires_grad:
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    if self.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                    optimizer.step()
        return {f"loss_{k}": v / max(steps, 1) for k, v in sums.items()}


# --------------------------------------------------------------------------- client
class Client:
    """One federated client: private data, a local model, private state across rounds."""

    def __init__(self, data: ClientData, spec: ModelSpecLike, trainer: LocalTrainer) -> None:
        if len(data.train) == 0:
            raise ValueError(f"client {data.client_id} has no training samples")
        self.client_id = int(data.client_id)
        self.data = data
        self.spec = spec
        self.trainer = trainer
        self.model = build_model(spec)
        self.state: dict[str, torch.Tensor] = {}  # private: never sent unless the trainer says so
        self.rounds_trained = 0

    @property
    def num_samples(self) -> int:
        return len(self.data.train)

    def fit(
        self, received: dict[str, torch.Tensor], rnd: int, seed: int, extra_losses=()
    ) -> ClientUpdate:
        """Initialise from ``received``, train locally, and return the update to upload.

        ``metrics`` reports the training losses and, as ``init_accuracy`` / ``init_loss``, the
        local test score of the model right after the init rule (before local training):
        for FedAvg that is the global model, for ALA the personalised mix.
        """
        torch.manual_seed(seed)
        self.trainer.init(self, received, rnd)
        init_scores = {f"init_{k}": v for k, v in self.evaluate().items()}
        # Restart the stream: local training then shuffles the same way whatever the init rule
        # drew (ALA draws its sample and batch order), so methods compare on equal batches.
        torch.manual_seed(seed)
        metrics = {**self.trainer.train(self, received, rnd, extra_losses), **init_scores}
        self.rounds_trained += 1
        keep = self.trainer.upload or (lambda _name: True)
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items() if keep(k)}
        payload = self.trainer.payload(self) if self.trainer.payload is not None else {}
        return ClientUpdate(self.client_id, state, self.num_samples, metrics, payload)

    def evaluate(self) -> dict:
        """Accuracy and loss of the local model on the local test split."""
        return evaluate(self.model, self.data.test)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, dataset, batch_size: int = 1024, only=None
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``dataset`` (all labels used).

    The model reads what ``dataset.available`` marks (real or filled values). ``only``
    (a modality name or a list of them) keeps just those modalities, as a test of robustness
    to missing modalities: samples that have none of them are skipped.
    """
    available = dataset.available
    if only is not None:
        only = [only] if isinstance(only, str) else list(only)
        unknown = [m for m in only if m not in dataset.names]
        if unknown or not only:
            raise ValueError(f"only={only!r} must name modalities among {dataset.names}")
        keep = torch.tensor([m in only for m in dataset.names])
        available = available & keep
        rows = available.any(1)
        dataset, available = dataset.subset(rows), available[rows]
    if len(dataset) == 0:
        return {"accuracy": float("nan"), "loss": float("nan")}
    logits = _logits(model, dataset, available, batch_size)
    loss = float(F.cross_entropy(logits, dataset.y, reduction="sum"))
    correct = int((logits.argmax(1) == dataset.y).sum())
    return {"accuracy": correct / len(dataset), "loss": loss / len(dataset)}


def _logits(model, dataset, available, batch_size: int = 1024) -> torch.Tensor:
    """``(n, C)`` logits of ``model`` in eval mode, reading what ``available`` marks."""
    model.eval()
    mask = available.float()
    return torch.cat(
        [
            model(
                {m: x[i : i + batch_size] for m, x in dataset.modalities.items()},
                mask[i : i + batch_size],
            )  # fmt: skip
            for i in range(0, len(dataset), batch_size)
        ]
    )


@torch.no_grad()
def per_class_accuracy(model: torch.nn.Module, dataset, num_classes: int | None = None):
    """Accuracy of ``model`` on each class of ``dataset``: ``(C,)``, NaN for absent classes."""
    num_classes = num_classes or dataset.num_classes
    pred = _logits(model, dataset, dataset.available).argmax(1)
    y = dataset.y
    total = torch.bincount(y, minlength=num_classes).double()
    right = torch.bincount(y[pred == y], minlength=num_classes).double()
    return torch.where(total > 0, right / total.clamp_min(1), torch.full_like(total, float("nan")))
