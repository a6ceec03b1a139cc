"""The :class:`Completion` interface and the fills that need no model: :class:`Mask` (the
engine's default), :class:`Zero` and :class:`Mean`."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..data import MultimodalDataset

__all__ = ["Completion", "Mask", "Mean", "Zero", "flat"]


def flat(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` as flat vectors ``(n, features)``."""
    return x.reshape(len(x), -1).double()  # (n, features)


class Completion(ABC):
    """Fill missing modalities of one client's data. Subclasses implement :meth:`fit` and
    :meth:`predict`; :meth:`transform` does the bookkeeping (only missing values change,
    shapes and dtypes kept, ``filled`` recorded)."""

    name = "completion"

    def fit(self, data: MultimodalDataset) -> Completion:
        """Learn from the client's training split (only values that are ``present``)."""
        self.names_ = data.names
        return self

    @abstractmethod
    def predict(self, data: MultimodalDataset, target: str, rows: torch.Tensor):
        """Values for modality ``target`` at ``rows`` (which miss it), shape ``(len(rows),
        ...)``, or ``None`` where nothing can be predicted (those rows stay masked)."""

    def transform(self, data: MultimodalDataset) -> MultimodalDataset:
        """A copy of ``data`` with the missing values this strategy can fill filled in."""
        if not hasattr(self, "names_"):
            raise RuntimeError(f"{self.name}: call fit(train_split) before transform")
        if data.names != self.names_:
            raise ValueError(f"data has modalities {data.names}, fitted on {self.names_}")
        modalities, filled = dict(data.modalities), data.filled.clone()
        for j, m in enumerate(data.names):
            rows = torch.nonzero(~data.available[:, j]).flatten()
            if len(rows) == 0:
                continue
            values = self.predict(data, m, rows)
            if values is None:
                continue
            values, ok = values if isinstance(values, tuple) else (values, None)
            if ok is not None:
                rows, values = rows[ok], values[ok]
            x = modalities[m].clone()
            x[rows] = values.to(x.dtype).reshape(len(rows), *x.shape[1:])
            modalities[m] = x
            filled[rows, j] = True
        return data.replace(modalities=modalities, filled=filled)

    def unfillable(self) -> list[str]:
        """Modalities this fitted strategy cannot fill at all (e.g. never seen locally)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Mask(Completion):
    """No completion: missing modalities stay masked out of the model (the default)."""

    name = "mask"

    def predict(self, data, target, rows):
        return None


class Zero(Completion):
    """Zero-fill, and let the model read the zeros as if they were data: what a pipeline
    without availability masks does (a black image, an all-zero caption). A baseline to
    beat, not a method."""

    name = "zero"

    def predict(self, data, target, rows):
        return torch.zeros(len(rows), *data.modalities[target].shape[1:])


class Mean(Completion):
    """The client's mean of each modality over the samples that have it.

    A client without a single sample of a modality cannot compute it: that modality stays
    masked, and :func:`complete` warns naming the client.
    """

    name = "mean"

    def fit(self, data):
        super().fit(data)
        self.means_ = {}
        for j, m in enumerate(data.names):
            have = data.present[:, j]
            self.means_[m] = data.modalities[m][have].double().mean(0) if have.any() else None
        return self

    def unfillable(self):
        return [m for m, mean in self.means_.items() if mean is None]

    def predict(self, data, target, rows):
        mean = self.means_[target]
        return None if mean is None else mean.expand(len(rows), *mean.shape)
