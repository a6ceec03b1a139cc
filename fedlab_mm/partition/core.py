"""What a split is: :class:`Partition` (per-client indices, masks and transforms) and
:class:`ClientData` (one client's train and test sets), with :func:`holdout` for a server
test set. The schemes that make one are in :mod:`.splits`; :mod:`.overlays` and
:mod:`.corruption` change one."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import MultimodalDataset
from ..seed import as_rng

__all__ = [
    "FEATURE_KINDS",
    "ClientData",
    "Partition",
    "apply_transform",
    "holdout",
    "labels_of",
    "record",
    "stratified_mask",
]

FEATURE_KINDS = ("noise", "rotate", "gain")


def record(scheme: str, **kwargs) -> dict:
    """One entry of :attr:`Partition.params`: the scheme and its arguments, as plain data."""
    clean = {}
    for k, v in kwargs.items():
        clean[k] = v.tolist() if isinstance(v, np.ndarray) else v
    return {"scheme": scheme, **clean}


def apply_transform(x: torch.Tensor, kind: str, value: float, rng) -> torch.Tensor:
    """Apply one feature transformation to a batch ``x`` of shape ``(n, ...)``."""
    if value == 0 or len(x) == 0:
        return x
    if kind == "noise":
        noise = torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
        return x + value * noise
    if kind == "rotate":
        if x.ndim != 4:
            raise ValueError(f"rotate needs images (n, C, H, W), got shape {tuple(x.shape)}")
        theta = math.radians(value)
        rot = torch.tensor(
            [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
            dtype=x.dtype,
        )
        grid = torch.nn.functional.affine_grid(
            rot.expand(len(x), 2, 3), list(x.shape), align_corners=False
        )
        return torch.nn.functional.grid_sample(x, grid, align_corners=False)
    if kind == "gain":
        if x.ndim == 3:  # (n, mels, frames) log-mel in [0, 1] spanning 80 dB
            return (x + value / 80.0).clamp(0.0, 1.0)
        return x * 10.0 ** (value / 20.0)
    raise ValueError(f"kind={kind!r} must be one of {FEATURE_KINDS}")


@dataclass(frozen=True, eq=False)
class Partition:
    """Which samples each client holds, and what it may see of them.

    Attributes
    ----------
    indices : list of int64 arrays
        ``indices[k]``: positions in the data set of client k's samples (disjoint).
    n_total : int
        Size of the data set the partition was made for.
    present : list of bool arrays (n_k, M), or None
        Per-client modality availability (None = everything present).
    modalities : tuple of str
        The modality names the columns of ``present`` refer to (empty if no masks).
    labeled : list of bool arrays (n_k,), or None
        Per-client label availability (None = all labelled).
    transforms : list of list of (modality, kind, value)
        Per-client feature transformations applied by :meth:`client_dataset`.
    params : list of dict
        How the partition was made, one dict per scheme applied, in order.
    """

    indices: list[np.ndarray]
    n_total: int
    present: list[np.ndarray] | None = None
    modalities: tuple[str, ...] = ()
    labeled: list[np.ndarray] | None = None
    transforms: list[list[tuple[str, str, float]]] | None = None
    params: list[dict] = field(default_factory=list)

    @property
    def num_clients(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        """Samples per client, shape ``(N,)``."""
        return np.array([len(i) for i in self.indices], dtype=np.int64)

    def label_counts(self, y, num_classes: int | None = None) -> np.ndarray:
        """Client x class count matrix, shape ``(N, C)``."""
        y = labels_of(y)
        num_classes = int(y.max()) + 1 if num_classes is None else num_classes
        return np.stack([np.bincount(y[idx], minlength=num_classes) for idx in self.indices])

    def client_dataset(self, dataset: MultimodalDataset, client_id: int) -> MultimodalDataset:
        """Client ``client_id``'s samples with its masks and feature transforms applied.

        Missing modalities are zeroed as well as masked, so no code can use them by mistake.
        """
        if len(dataset) != self.n_total:
            raise ValueError(
                f"the partition was made for {self.n_total} samples, the dataset has {len(dataset)}"
            )
        if not 0 <= client_id < self.num_clients:
            raise ValueError(f"client_id={client_id} must lie in 0..{self.num_clients - 1}")
        sub = dataset.subset(self.indices[client_id])
        changes = {}
        modalities = dict(sub.modalities)
        for name, kind, value in (self.transforms or [[]] * self.num_clients)[client_id]:
            if name not in modalities:
                raise ValueError(
                    f"feature_skew names modality {name!r}, the dataset has {dataset.names}"
                )
            rng = np.random.default_rng([client_id, FEATURE_KINDS.index(kind)])
            modalities[name] = apply_transform(modalities[name], kind, value, rng)
        if self.present is not None:
            if list(self.modalities) != dataset.names:
                raise ValueError(
                    f"the partition's masks are for modalities {list(self.modalities)}, "
                    f"the dataset has {dataset.names}"
                )
            present = torch.from_numpy(self.present[client_id])
            for j, name in enumerate(dataset.names):
                x = modalities[name]
                keep = present[:, j].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
                modalities[name] = x * keep
            changes["present"] = present
        if self.labeled is not None:
            changes["labeled"] = torch.from_numpy(self.labeled[client_id])
        return sub.replace(modalities=modalities, **changes)

    def clients(self, dataset: MultimodalDataset, test_fraction: float = 0.2, seed=0):
        """One :class:`ClientData` per client, each with a stratified local train/test split
        (see :func:`stratified_mask`)."""
        rng = as_rng(seed)
        out = []
        for k in range(self.num_clients):
            local = self.client_dataset(dataset, k)
            test_mask = stratified_mask(local.y.numpy(), test_fraction, rng)
            out.append(ClientData(k, local.subset(~test_mask), local.subset(test_mask)))
        return out

    def with_changes(self, record: dict, **changes) -> Partition:
        """A copy with some fields replaced and ``record`` appended to ``params``."""
        return dataclasses.replace(self, params=[*self.params, record], **changes)

    def __repr__(self) -> str:
        sizes = self.sizes
        schemes = " + ".join(p["scheme"] for p in self.params) or "custom"
        return (
            f"Partition({schemes}: {self.num_clients} clients, {int(sizes.sum())}/{self.n_total}"
            f" samples, sizes {int(sizes.min())}-{int(sizes.max())})"
        )


def stratified_mask(y: np.ndarray, test_fraction: float, rng) -> np.ndarray:
    """Boolean test mask: ``round(test_fraction * count)`` samples of each class.

    Every class held at least twice gives at least one test sample (when the fraction is
    positive) and keeps at least one for training; a class held once stays in training, so
    the training side is never empty.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must lie in [0, 1)")
    rng = as_rng(rng)
    y = np.asarray(y)
    mask = np.zeros(len(y), dtype=bool)
    if test_fraction == 0:
        return mask
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        if len(members) < 2:
            continue
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        mask[members[:n_test]] = True
    return mask


def holdout(dataset: MultimodalDataset, fraction: float = 0.2, seed=0):
    """Split off a stratified global test set: returns ``(rest, test)``.

    The server's held-out test set; partition ``rest`` among the clients.
    """
    mask = stratified_mask(dataset.y.numpy(), fraction, as_rng(seed))
    return dataset.subset(~mask), dataset.subset(mask)


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's private data: a local train and test split."""

    client_id: int
    train: MultimodalDataset
    test: MultimodalDataset

    def __repr__(self) -> str:
        n_train, n_test = len(self.train), len(self.test)
        return f"ClientData(client_id={self.client_id}, train={n_train}, test={n_test})"


def labels_of(data) -> np.ndarray:
    """The integer labels of a data set or label array, checked: a 1-d array of ints >= 0."""
    if isinstance(data, MultimodalDataset):
        data = data.y
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    y = np.asarray(data)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError("data must be a MultimodalDataset or a 1-d array of integer labels")
    if len(y) and y.min() < 0:
        raise ValueError("labels must be non-negative integers")
    return y.astype(np.int64)
