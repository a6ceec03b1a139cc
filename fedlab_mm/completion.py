"""FedMVP's modality completion: fill in missing modalities on the client before training.

FedMVP (Che et al., ECML-PKDD 2024, arXiv 2406.11048) completes a sample that lacks its image
or its text with large frozen pretrained generators (captioning, text-to-image) before local
training. The kit offers that idea next to simpler baselines, all behind one interface: a
:class:`Completion` is fitted on one client's training split and then fills what
``present`` marks missing, in that client's train and test splits. Filled values are
recorded in ``dataset.filled``; ``present`` keeps saying what is real. Models read
``dataset.available = present | filled``.

=============  ===========================================  =================================
strategy       needs                                        leaks / risks
=============  ===========================================  =================================
``mask``       nothing (the engine's default)               nothing
``zero``       nothing: zeros read as data (a baseline)     the model cannot tell "missing"
``mean``       the client's own samples of that modality    nothing beyond the client
``knn``        local samples that have the missing          nothing beyond the client; copies
               modality and share one with the query        real local values into new rows
``regression`` local complete pairs (a ridge map from       nothing beyond the client
               each present modality to the missing one)
``frozen``     frozen models built from public data         nothing: the models are public
               (:mod:`fedlab_mm.pretrained`); digits only        and applied locally; but their
                                                            mistakes become training data
=============  ===========================================  =================================

Everything here is local to one client: no completion step sends anything to the server.

FedMVP's two knowledge-transfer losses, MCM and RAM, are in :mod:`fedlab_mm.mcm_ram`.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from abc import ABC, abstractmethod

import numpy as np
import torch

from . import pretrained
from .data import MultimodalDataset, speech
from .federated import evaluate

__all__ = [
    "Completion",
    "Mask",
    "Zero",
    "Mean",
    "KNN",
    "Regression",
    "Frozen",
    "STRATEGIES",
    "make",
    "complete",
    "views",
]


def _flat(x: torch.Tensor) -> torch.Tensor:
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


class KNN(Completion):
    """Average the missing modality over the ``k`` nearest local samples that have it.

    Distance: mean over the modalities both samples have of the squared Euclidean distance
    per feature. Rows that share no modality with any candidate fall back to the mean.
    """

    name = "knn"

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} must be an integer >= 1")
        self.k = k

    def fit(self, data):
        super().fit(data)
        self.data_ = data
        self.mean_ = Mean().fit(data)
        return self

    def unfillable(self):
        return self.mean_.unfillable()

    def predict(self, data, target, rows):
        ref, t = self.data_, data.names.index(target)
        cand = torch.nonzero(ref.present[:, t]).flatten()
        if len(cand) == 0:
            return None
        dist = torch.zeros(len(rows), len(cand), dtype=torch.float64)
        count = torch.zeros_like(dist)
        for j, m in enumerate(data.names):
            if j == t:
                continue
            q, c = _flat(data.modalities[m][rows]), _flat(ref.modalities[m][cand])
            both = data.available[rows, j].unsqueeze(1) & ref.present[cand, j].unsqueeze(0)
            d = torch.cdist(q, c).pow(2) / q.shape[1]
            dist += torch.where(both, d, torch.zeros_like(d))
            count += both.double()
        dist = torch.where(count > 0, dist / count.clamp_min(1), torch.full_like(dist, torch.inf))
        k = min(self.k, len(cand))
        near_dist, nearest = dist.topk(k, dim=1, largest=False)  # (q, k)
        weight = torch.isfinite(near_dist).double().unsqueeze(-1)  # only real neighbours count
        neighbours = _flat(ref.modalities[target][cand])[nearest]  # (q, k, features)
        values = (neighbours * weight).sum(1) / weight.sum(1).clamp_min(1)
        lonely = torch.isinf(dist).all(1)
        if lonely.any():
            values[lonely] = self.mean_.means_[target].reshape(1, -1)
        return values


class Regression(Completion):
    """Ridge maps from each other modality to the missing one, fitted on local pairs.

    For every (source, target) pair with at least ``min_pairs`` local samples that have
    both, a ridge regression on centred source features (penalty ``alpha`` times the number
    of pairs times the mean feature variance); a row is filled with the
    mean prediction over its available sources (the local mean if it has none).
    """

    name = "regression"

    def __init__(self, alpha: float = 1.0, min_pairs: int = 5) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha={alpha} must be > 0")
        self.alpha, self.min_pairs = float(alpha), int(min_pairs)

    def fit(self, data):
        super().fit(data)
        self.mean_ = Mean().fit(data)
        self.maps_ = {}
        for s, src in enumerate(data.names):
            for t, tgt in enumerate(data.names):
                both = data.present[:, s] & data.present[:, t]
                if s != t and int(both.sum()) >= self.min_pairs:
                    self.maps_[src, tgt] = self._ridge(
                        _flat(data.modalities[src][both]), _flat(data.modalities[tgt][both])
                    )
        return self

    def _ridge(self, x, y):
        # Centred, not standardised: a pixel that is almost always 0 would get a tiny std and a
        # huge weight. The penalty is scaled by the mean feature variance instead.
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        n, d = xc.shape
        lam = self.alpha * n * float(xc.pow(2).mean()) + 1e-8
        if d <= n:  # primal: (X^T X + lam I) W = X^T Y
            w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(d, dtype=xc.dtype), xc.T @ yc)
        else:  # dual: W = X^T (X X^T + lam I)^-1 Y
            w = xc.T @ torch.linalg.solve(xc @ xc.T + lam * torch.eye(n, dtype=xc.dtype), yc)
        return mx, w, my

    def unfillable(self):
        return self.mean_.unfillable()

    def predict(self, data, target, rows):
        total = torch.zeros(
            len(rows), _flat(data.modalities[target][:1]).shape[1], dtype=torch.float64
        )
        count = torch.zeros(len(rows), 1, dtype=torch.float64)
        for s, src in enumerate(data.names):
            if (src, target) not in self.maps_:
                continue
            mx, w, my = self.maps_[src, target]
            use = data.available[rows, s]
            if use.any():
                x = _flat(data.modalities[src][rows[use]])
                total[use] += (x - mx) @ w + my
                count[use] += 1
        mean = self.mean_.means_[target]
        if mean is None:
            ok = count.flatten() > 0
            return (total / count.clamp_min(1), ok) if ok.any() else None
        fallback = mean.reshape(1, -1).expand_as(total)
        return torch.where(count > 0, total / count.clamp_min(1), fallback)

    def __repr__(self) -> str:
        return f"Regression(alpha={self.alpha:g})"


class Frozen(Completion):
    """FedMVP's idea with the frozen models the kit has offline (:mod:`fedlab_mm.pretrained`).

    - missing **text**: the frozen public image classifier gives class probabilities; the
      caption is their mix of prompt-augmented class prototypes (MiniLM embeddings);
    - missing **image**: the frozen text-to-image generator renders the sample's caption;
    - missing **audio**: the class is read off the image and caption (frozen classifiers)
      and eSpeak NG speaks that word with a random voice (``AudioConfig`` as in the data).

    A row without the modality its generator needs stays masked. For the digits' modality
    names only.
    """

    name = "frozen"
    KNOWN = ("image", "audio", "text")

    def __init__(self, audio=None, seed: int = 0) -> None:
        self.audio, self.seed = audio, seed

    def fit(self, data):
        unknown = [m for m in data.names if m not in self.KNOWN]
        if unknown:
            raise ValueError(
                f"frozen completion knows the digits' modalities {self.KNOWN}, not {unknown}"
            )
        for m, shape in (("image", (1, 28, 28)), ("text", (384,))):
            if m in data.names and tuple(data.modalities[m].shape[1:]) != shape:
                raise ValueError(
                    f"frozen completion needs {m} shaped {shape} as in fm.data.digits(), "
                    f"got {tuple(data.modalities[m].shape[1:])}"
                )
        return super().fit(data)

    def _class_probs(self, data, rows):
        """Mean class probabilities of the frozen classifiers over the available views."""

        total, count = torch.zeros(len(rows), 10), torch.zeros(len(rows), 1)
        for m, classify in (
            ("image", pretrained.classify_images),
            ("text", pretrained.classify_text),
        ):
            if m in data.names:
                use = data.available[rows, data.names.index(m)]
                if use.any():
                    total[use] += classify(data.modalities[m][rows[use]])
                    count[use] += 1
        return total / count.clamp_min(1), count.flatten() > 0

    def predict(self, data, target, rows):

        if target == "text":
            if "image" not in data.names:
                return None
            ok = data.available[rows, data.names.index("image")]
            probs = pretrained.classify_images(data.modalities["image"][rows[ok]])
            values = torch.zeros(len(rows), pretrained.caption_prototypes().shape[1])
            values[ok] = torch.nn.functional.normalize(
                probs @ pretrained.caption_prototypes(), dim=1
            )
            return values, ok
        if target == "image":
            if "text" not in data.names:
                return None
            ok = data.available[rows, data.names.index("text")]
            values = torch.zeros(len(rows), 1, 28, 28)
            values[ok] = pretrained.text_to_image(data.modalities["text"][rows[ok]])
            return values, ok

        probs, ok = self._class_probs(data, rows)
        shape = data.modalities["audio"].shape[1:]
        values = torch.zeros(len(rows), *shape)
        if ok.any():
            labels = probs[ok].argmax(1).numpy()
            config = self.audio or speech.AudioConfig()
            rng = np.random.default_rng([self.seed, len(rows)])
            spec, _ = speech.render_clips(labels, config, rng, progress=False)
            if tuple(spec.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"generated audio has shape {tuple(spec.shape[1:])}, the data {tuple(shape)}:"
                    " pass Frozen(audio=...) with the AudioConfig the data were made with"
                )
            values[ok] = spec
        return values, ok

    def __repr__(self) -> str:
        return f"Frozen(seed={self.seed})"


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
