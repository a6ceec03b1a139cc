"""The container every data set in the kit is: :class:`MultimodalDataset`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["MultimodalDataset", "positive_int"]


@dataclass(frozen=True, eq=False)
class MultimodalDataset:
    """An immutable bundle of aligned modalities, labels and masks.

    Attributes
    ----------
    modalities : dict[str, Tensor]
        Name -> tensor of shape ``(n, ...)``, e.g. ``"image": (n, 1, 28, 28)``.
    y : Tensor, shape ``(n,)``, int64
        Class labels in ``0 .. len(classes) - 1``.
    classes : list[str]
        Class names (used in text prompts).
    present : Tensor, shape ``(n, M)``, bool
        ``present[i, j]`` says whether sample i really has modality ``names[j]``.
        Default: all True.
    labeled : Tensor, shape ``(n,)``, bool
        Which labels may be used for training. Default: all True.
    latents : dict[str, Tensor] or None
        Ground truth of synthetic data: ``"shared"`` and ``"private_<modality>"``.
    filled : Tensor, shape ``(n, M)``, bool
        Which missing values a completion strategy filled in (``fm.completion``): never real
        data, never ``present``. Models see :attr:`available` = ``present | filled``.
        Default: all False.
    meta : dict[str, numpy array]
        Per-sample extras (caption strings, voice, ...), indexed along with the data.

    Examples
    --------
    >>> ds = synthetic(n_samples=100, seed=0)
    >>> len(ds), ds.names
    (100, ['image', 'audio', 'text'])
    >>> ds.subset([0, 5, 7]).y.shape
    torch.Size([3])
    """

    modalities: dict[str, torch.Tensor]
    y: torch.Tensor
    classes: list[str]
    present: torch.Tensor | None = None
    labeled: torch.Tensor | None = None
    latents: dict[str, torch.Tensor] | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    filled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.modalities, dict) or not self.modalities:
            raise ValueError("modalities must be a non-empty dict of name -> tensor")
        y = torch.as_tensor(self.y)
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(
                f"y must be a 1-d integer tensor, got shape {tuple(y.shape)} {y.dtype}"
            )
        y = y.long()
        n = len(y)
        for name, x in self.modalities.items():
            if not isinstance(x, torch.Tensor) or x.shape[0] != n:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"modality {name!r} has shape {shape}; its first dim must be n={n}"
                )
        if n and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name)")
        present = (
            torch.ones(n, len(self.modalities), dtype=torch.bool)
            if self.present is None
            else torch.as_tensor(self.present, dtype=torch.bool)
        )
        if present.shape != (n, len(self.modalities)):
            raise ValueError(f"present has shape {tuple(present.shape)}, expected {(n, self.M)}")
        labeled = (
            torch.ones(n, dtype=torch.bool)
            if self.labeled is None
            else torch.as_tensor(self.labeled, dtype=torch.bool)
        )
        if labeled.shape != (n,):
            raise ValueError(f"labeled has shape {tuple(labeled.shape)}, expected ({n},)")
        filled = (
            torch.zeros(n, len(self.modalities), dtype=torch.bool)
            if self.filled is None
            else torch.as_tensor(self.filled, dtype=torch.bool)
        )
        if filled.shape != present.shape:
            raise ValueError(f"filled has shape {tuple(filled.shape)}, expected {(n, self.M)}")
        if (filled & present).any():
            raise ValueError("filled marks values that are present: only missing values are filled")
        for key, value in (self.latents or {}).items():
            if value.shape[0] != n:
                raise ValueError(f"latent {key!r} has {value.shape[0]} rows, expected {n}")
        for key, value in self.meta.items():
            if len(value) != n:
                raise ValueError(f"meta {key!r} has {len(value)} entries, expected {n}")
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "present", present)
        object.__setattr__(self, "labeled", labeled)
        object.__setattr__(self, "filled", filled)
        object.__setattr__(self, "classes", list(self.classes))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.y)

    @property
    def names(self) -> list[str]:
        """Modality names, in the column order of ``present``."""
        return list(self.modalities)

    @property
    def M(self) -> int:  # noqa: N802 - the paper's symbol
        """Number of modalities."""
        return len(self.modalities)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def available(self) -> torch.Tensor:
        """``(n, M)`` bool: what a model may read, real (``present``) or ``filled``."""
        return self.present | self.filled

    @property
    def missing_rate(self) -> dict[str, float]:
        """Fraction of samples missing each modality."""
        if len(self) == 0:
            return {m: 0.0 for m in self.names}
        rates = 1.0 - self.present.float().mean(0)
        return {m: float(r) for m, r in zip(self.names, rates)}

    def subset(self, idx) -> MultimodalDataset:
        """The samples at ``idx`` (ints, tensor, slice or bool mask), as a new dataset."""
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = torch.as_tensor(np.asarray(idx))
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"a boolean idx needs shape ({len(self)},), got {tuple(idx.shape)}"
                )
            idx = torch.nonzero(idx).flatten()
        idx = idx.long().reshape(-1)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"idx out of range for a dataset of {len(self)} samples")
        np_idx = idx.numpy()
        return MultimodalDataset(
            modalities={m: x[idx] for m, x in self.modalities.items()},
            y=self.y[idx],
            classes=self.classes,
            present=self.present[idx],
            labeled=self.labeled[idx],
            filled=self.filled[idx],
            latents=None if self.latents is None else {k: v[idx] for k, v in self.latents.items()},
            meta={k: np.asarray(v)[np_idx] for k, v in self.meta.items()},
        )

    def replace(self, **changes) -> MultimodalDataset:
        """A copy with some fields changed, e.g. ``ds.replace(present=mask)``."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m}: {tuple(x.shape[1:])}" for m, x in self.modalities.items())
        missing = ", ".join(f"{m} {r:.0%}" for m, r in self.missing_rate.items())
        counts = torch.bincount(self.y, minlength=self.num_classes).tolist() if len(self) else []
        lines = [
            f"MultimodalDataset(n={len(self)}, classes={self.num_classes})",
            f"  modalities: {shapes}",
            f"  missing:    {missing}",
            *(
                [f"  filled:     {int(self.filled.sum())} values (fm.completion)"]
                if self.filled.any()
                else []
            ),
            f"  labeled:    {float(self.labeled.float().mean()) if len(self) else 0:.0%}",
            f"  per class:  {counts}",
        ]
        if self.latents:
            lines.append(
                "  latents:    "
                + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in self.latents.items())
            )
        return "\n".join(lines)


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` and ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)
