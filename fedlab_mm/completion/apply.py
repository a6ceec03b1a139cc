"""Completing clients: :data:`STRATEGIES` by name, :func:`make`, :func:`complete`, and
:func:`views`, a model's accuracy with each modality alone."""

from __future__ import annotations

import copy
import dataclasses
import warnings

from ..data import MultimodalDataset
from ..federated import evaluate
from .base import Completion, Mask, Mean, Zero
from .frozen_models import Frozen
from .local import KNN, Regression

__all__ = ["STRATEGIES", "complete", "make", "views"]


STRATEGIES = {
    "mask": Mask,
    "zero": Zero,
    "mean": Mean,
    "knn": KNN,
    "regression": Regression,
    "frozen": Frozen,
}


def make(strategy) -> Completion:
    """A :class:`Completion` from its name (``"mask"``, ``"mean"``, ``"knn"``,
    ``"regression"``) or an instance (returned as a fresh, unfitted copy)."""
    if isinstance(strategy, Completion):
        return copy.deepcopy(strategy)
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy={strategy!r} must be one of {sorted(STRATEGIES)} or a Completion"
        )
    return STRATEGIES[strategy]()


def complete(clients: list, strategy="mask") -> list:
    """Complete every client's data with its own copy of ``strategy``.

    Each client fits the strategy on its *training* split only and fills both its train and
    test splits. Returns new ``ClientData`` (the inputs are unchanged).

    Examples
    --------
    >>> clients = fm.completion.complete(part.clients(ds), "knn")   # doctest: +SKIP
    """
    out = []
    for client in clients:
        completer = make(strategy).fit(client.train)
        for m in completer.unfillable():
            if not client.train.present[:, client.train.names.index(m)].any():
                warnings.warn(
                    f"client {client.client_id} has no sample with modality {m!r}: "
                    f"{completer.name} cannot fill it, it stays masked",
                    stacklevel=2,
                )
        train, test = completer.transform(client.train), completer.transform(client.test)
        out.append(dataclasses.replace(client, train=train, test=test))
    return out


def views(model, data: MultimodalDataset, labels: dict[str, str] | None = None) -> dict:
    """A model's accuracy on ``data`` with every modality, then with each one alone.

    The test of whether a model degrades gracefully when a modality is missing: ``"both"``
    (all modalities; the name of notebook 05's image + caption pair), then one entry per
    modality, ``"<name> only"`` unless ``labels`` renames it (e.g. ``{"text": "caption
    only"}``).
    """

    labels = labels or {}
    unknown = sorted(set(labels) - set(data.names))
    if unknown:
        raise ValueError(f"labels names modalities {unknown}; the data has {data.names}")
    out = {"both": evaluate(model, data)["accuracy"]}
    for m in data.names:
        out[labels.get(m, f"{m} only")] = evaluate(model, data, only=m)["accuracy"]
    return out
