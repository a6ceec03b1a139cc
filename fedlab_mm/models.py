"""Multimodal networks built from a spec, so every client and the server build the same one.

``MultimodalNet`` = one encoder per modality (to a common width ``d``) -> a fusion module ->
a linear classifier. Parameter names follow that structure (``encoders.<modality>.*``,
``fusion.*``, ``head.*``) so that later mechanisms can address "the top layers" or "the
adapters" by name.

Missing modalities contribute nothing: each encoder's *output* is multiplied by the
``present`` mask before fusion, so whatever values sit in a missing slot cannot reach the
prediction. No BatchNorm anywhere: batch statistics would leak missing inputs and differ
between clients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ModelSpec",
    "MLPEncoder",
    "ImageEncoder",
    "SpectrogramEncoder",
    "ConcatFusion",
    "AttentionFusion",
    "MeanFusion",
    "ResidualMLP",
    "MultimodalNet",
    "build_model",
    "ENCODER_KINDS",
    "FUSIONS",
]

ENCODER_KINDS = ("mlp", "image", "spectrogram")
FUSIONS = ("concat", "attention", "mean")


class SpecMethods:
    """``replace`` and ``to_dict`` shared by the frozen-dataclass model specs
    (:class:`ModelSpec`, ``clip.BroadcastSpec``, ``hetero.HeteroSpec``)."""

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain data, for JSON checkpoints."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSpec(SpecMethods):
    """Everything needed to build a :class:`MultimodalNet` (JSON-friendly, hashable).

    Attributes
    ----------
    inputs : tuple of (name, shape) pairs
        Each modality's per-sample shape, e.g. ``(("image", (1, 28, 28)), ("text", (384,)))``.
    num_classes : int
    d : int
        Width every encoder maps to.
    hidden : int
        Hidden width of MLP encoders and of the fusion block.
    fusion : str
        One of :data:`FUSIONS`: ``"concat"`` (:class:`ConcatFusion`, an MLP over the
        concatenated features), ``"attention"`` (:class:`AttentionFusion`, self-attention over
        the aligned/context tokens) or ``"mean"`` (:class:`MeanFusion`, the same tokens
        averaged with no attention: the ablation of the attention layer). The last two need
        ``split``.
    encoders : tuple of (name, kind) pairs
        Encoder kind per modality; inferred from the shape when built with
        :meth:`from_dataset` (1-d: ``mlp``, (C, H, W): ``image``, (mels, frames): ``spectrogram``).
    dropout : float
        Dropout before the classifier.
    split : int
        Width ``k`` of FedEPA's aligned and context features: each encoder output is split by
        two linear heads into ``z_aligned`` and ``z_context`` (0 = no split).
    heads : int
        Attention heads of the ``"attention"`` fusion (must divide ``split``).
    unimodal : bool
        FedMVP's unimodal representations: a linear projection per modality into the joint
        embedding's width, L2-normalised (``features()["unimodal"]``), for the MCM and RAM
        loss terms in :mod:`fedlab_mm.transfer`. The joint embedding is then L2-normalised
        too, so that both live on the same sphere and go through the same classifier.
    frozen_towers : bool
        With ``unimodal``: read the unimodal representations off frozen pretrained towers
        (FedMVP's setting) instead of the trainable encoders: the public image tower of
        :mod:`fedlab_mm.frozen` for ``image`` (1, 28, 28) and the MiniLM embedding itself for
        ``text`` (384,). Only the projections train; the towers are never sent.
    shared_encoder : bool
        With ``unimodal``: FedMVP's ``CommonEncoder``. One linear map of the joint width,
        followed by L2 normalisation, is shared by the joint representation and every
        unimodal one (each modality's own projection first brings it to that width, as
        FedMVP's backbones end in that width). ``False``: each representation is normalised
        straight after its own projection (the kit's first design).
    residual_head : bool
        FedMVP's classifier: ``x + proj2(dropout(relu(proj1(x))))`` (square layers, the
        spec's ``dropout`` inside), then the linear ``head``. ``False``: the linear ``head``
        alone, after ``dropout``. Either way ``head`` is the last layer, which RAM applies to a
        unimodal representation on its own (FedMVP's ``classifier``, without the residual
        block).

    Examples
    --------
    >>> spec = ModelSpec.from_dataset(fm.data.synthetic(100), d=32)   # doctest: +SKIP
    >>> model = build_model(spec)                                      # doctest: +SKIP
    """

    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    num_classes: int
    d: int = 64
    hidden: int = 128
    fusion: str = "concat"
    encoders: tuple[tuple[str, str], ...] = ()
    dropout: float = 0.0
    split: int = 0
    heads: int = 4
    unimodal: bool = False
    frozen_towers: bool = False
    shared_encoder: bool = False
    residual_head: bool = False

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("inputs must name at least one modality")
        names = [name for name, _ in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be distinct, got {names}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes} must be >= 2")
        for field_name in ("d", "hidden"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field_name}={value!r} must be a positive integer")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion={self.fusion!r} must be one of {FUSIONS}")
        if isinstance(self.split, bool) or not isinstance(self.split, int) or self.split < 0:
            raise ValueError(f"split={self.split!r} must be an integer >= 0")
        if self.fusion in ("attention", "mean") and self.split == 0:
            raise ValueError(
                f"fusion={self.fusion!r} pools the aligned/context tokens: set split=k (e.g. 16)"
            )
        if self.fusion == "attention":
            if self.heads < 1 or self.split % self.heads:
                raise ValueError(f"heads={self.heads} must divide split={self.split}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1)")
        if self.shared_encoder and not self.unimodal:
            raise ValueError(
                "shared_encoder=True needs unimodal=True (it encodes the unimodal and the "
                "joint representations alike)"
            )
        if self.frozen_towers:
            if not self.unimodal:
                raise ValueError("frozen_towers=True needs unimodal=True")
            for name, shape in self.inputs:
                if FROZEN_TOWERS.get(name, (None,))[0] != tuple(shape):
                    raise ValueError(
                        f"no frozen tower for {name!r} with shape {tuple(shape)}; there are "
                        f"{ {m: s for m, (s, _) in FROZEN_TOWERS.items()} }"
                    )
        kinds = dict(self.encoders)
        unknown = set(kinds) - set(names)
        if unknown:
            raise ValueError(f"encoders names unknown modalities {sorted(unknown)}; known: {names}")
        filled = tuple((name, kinds.get(name) or _infer_kind(shape)) for name, shape in self.inputs)
        for name, kind in filled:
            if kind not in ENCODER_KINDS:
                raise ValueError(
                    f"encoder kind {kind!r} for {name!r} must be one of {ENCODER_KINDS}"
                )
        object.__setattr__(self, "inputs", tuple((n, tuple(s)) for n, s in self.inputs))
        object.__setattr__(self, "encoders", filled)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.inputs]

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> ModelSpec:
        """The spec whose inputs match ``dataset``'s modalities and classes."""
        inputs = tuple((name, tuple(x.shape[1:])) for name, x in dataset.modalities.items())
        return cls(inputs=inputs, num_classes=dataset.num_classes, **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        data = dict(data)
        data["inputs"] = tuple((n, tuple(s)) for n, s in data["inputs"])
        data["encoders"] = tuple((n, k) for n, k in data["encoders"])
        return cls(**data)


def _infer_kind(shape) -> str:
    if len(shape) == 1:
        return "mlp"
    if len(shape) == 3:
        return "image"
    if len(shape) == 2:
        return "spectrogram"
    raise ValueError(f"cannot infer an encoder for per-sample shape {tuple(shape)}")


class MLPEncoder(nn.Module):
    """Vector ``(B, in_dim)`` -> ``(B, d)``: Linear -> ReLU -> Linear."""

    def __init__(self, in_dim: int, d: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class ImageEncoder(nn.Module):
    """Image ``(B, C, H, W)`` -> ``(B, d)``: two stride-2 convolutions, then a linear map."""

    def __init__(self, shape: tuple[int, int, int], d: int, channels: int = 16) -> None:
        super().__init__()
        c, h, w = shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        out_h, out_w = (h + 3) // 4, (w + 3) // 4
        self.proj = nn.Linear(2 * channels * out_h * out_w, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).flatten(1))


class SpectrogramEncoder(nn.Module):
    """Log-mel ``(B, mels, frames)`` -> ``(B, d)``: 1-D convolutions over time (mel bands as
    channels), mean over time, then a linear map. Shift in time barely changes the output."""

    def __init__(self, shape: tuple[int, int], d: int, channels: int = 32) -> None:
        super().__init__()
        mels, _frames = shape
        self.conv = nn.Sequential(
            nn.Conv1d(mels, channels, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, 2 * channels, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.proj = nn.Linear(2 * channels, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).mean(-1))


class ConcatFusion(nn.Module):
    """Concatenate the (masked) modality features and mix them: ``(B, M*w) -> (B, d)``.

    ``forward(parts, present)`` takes, per modality, a list of feature tensors (the encoder
    output, or its aligned and context parts).
    """

    def __init__(self, names: list[str], width: int, d: int, hidden: int) -> None:
        super().__init__()
        self.names = list(names)
        self.out_dim = d
        self.net = nn.Sequential(
            nn.Linear(len(names) * width, hidden), nn.ReLU(), nn.Linear(hidden, d)
        )

    def forward(self, parts: dict[str, list[torch.Tensor]], present: torch.Tensor) -> torch.Tensor:
        masked = [
            torch.cat(parts[m], dim=1) * present[:, j : j + 1] for j, m in enumerate(self.names)
        ]
        return self.net(torch.cat(masked, dim=1))


class AttentionFusion(nn.Module):
    """FedEPA-style self-attention fusion over per-modality tokens.

    Tokens ``[a_1, c_1, ..., a_M, c_M]`` (B, 2M, k) plus a learned type embedding per slot go
    through multi-head self-attention with a residual connection and LayerNorm; the joint
    embedding is the mean over the present tokens. A missing modality's tokens are masked out
    as keys and left out of the mean, so they cannot change the output. A sample with no
    modality at all is refused with a ``ValueError`` naming its position (multi-head attention
    with every key masked would give NaN).
    ``last_attention`` keeps the latest attention map (B, 2M, 2M), rows summing to 1.
    """

    def __init__(
        self, names: list[str], k: int, heads: int = 4, type_embeddings: bool = True
    ) -> None:
        super().__init__()
        self.names = list(names)
        self.out_dim = k
        tokens = 2 * len(self.names)
        self.types = nn.Parameter(0.02 * torch.randn(tokens, k)) if type_embeddings else None
        self.attn = nn.MultiheadAttention(k, heads, batch_first=True)
        self.norm = nn.LayerNorm(k)
        self.last_attention: torch.Tensor | None = None

    def forward(self, parts: dict[str, list[torch.Tensor]], present: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([t for m in self.names for t in parts[m]], dim=1)  # (B, 2M, k)
        if self.types is not None:
            tokens = tokens + self.types
        none = (present == 0).all(dim=1)
        if none.any():  # every key masked: attention has nothing to attend to (NaN logits)
            rows = none.nonzero().flatten().tolist()
            raise ValueError(
                f"samples at positions {rows[:10]}{' ...' if len(rows) > 10 else ''} have no "
                "modality present; attention fusion needs at least one per sample (drop those "
                "samples, or complete a modality first: fm.completion)"
            )
        ignore = present.repeat_interleave(2, dim=1) == 0  # (B, 2M), True = missing
        out, weights = self.attn(tokens, tokens, tokens, key_padding_mask=ignore, need_weights=True)
        out = self.norm(tokens + out)
        keep = (~ignore).float().unsqueeze(-1)  # (B, 2M, 1)
        self.last_attention = weights.detach()
        return (out * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, k)


class MeanFusion(nn.Module):
    """:class:`AttentionFusion` without the attention: the mean of the LayerNorm-ed tokens.

    Tokens ``[a_1, c_1, ..., a_M, c_M]`` (B, 2M, k) plus a learned type embedding per slot go
    through LayerNorm, and the joint embedding is their mean over the present tokens. It keeps
    everything of the attention fusion except the attention layer (and its residual), so that
    swapping one for the other measures what the attention adds. A missing modality's tokens
    are left out of the mean; a sample with no modality at all gets the zero vector, as
    :class:`ConcatFusion` gives it zero inputs.
    """

    def __init__(self, names: list[str], k: int, type_embeddings: bool = True) -> None:
        super().__init__()
        self.names = list(names)
        self.out_dim = k
        tokens = 2 * len(self.names)
        self.types = nn.Parameter(0.02 * torch.randn(tokens, k)) if type_embeddings else None
        self.norm = nn.LayerNorm(k)

    def forward(self, parts: dict[str, list[torch.Tensor]], present: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([t for m in self.names for t in parts[m]], dim=1)  # (B, 2M, k)
        if self.types is not None:
            tokens = tokens + self.types
        keep = present.repeat_interleave(2, dim=1).unsqueeze(-1)  # (B, 2M, 1), 1 = present
        out = self.norm(tokens)
        return (out * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, k)


class ResidualMLP(nn.Module):
    """FedMVP's block before the classifier: ``x + proj2(dropout(relu(proj1(x))))``, both
    layers ``(width, width)``."""

    def __init__(self, width: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj1 = nn.Linear(width, width)
        self.proj2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj2(self.dropout(torch.relu(self.proj1(x))))


# name -> (input shape, representation width) of FedMVP-style frozen unimodal towers
FROZEN_TOWERS = {"image": ((1, 28, 28), 64), "text": ((384,), 384)}


def _frozen_tower(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "image":
        from .frozen import image_features

        return image_features(x)
    return x.float()  # text: the frozen MiniLM embedding is the representation


class MultimodalNet(nn.Module):
    """Encoders -> fusion -> classifier, for any set of modalities.

    ``forward(modalities, present)`` returns logits ``(B, C)``; :meth:`embed` the fused
    representation ``(B, d)``; :meth:`encode` the per-modality features.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        shapes = dict(spec.inputs)
        encoders = {}
        for name, kind in spec.encoders:
            shape = shapes[name]
            if kind == "mlp":
                in_dim = 1
                for size in shape:
                    in_dim *= size
                encoders[name] = MLPEncoder(in_dim, spec.d, spec.hidden)
            elif kind == "image":
                encoders[name] = ImageEncoder(shape, spec.d)
            else:
                encoders[name] = SpectrogramEncoder(shape, spec.d)
        self.encoders = nn.ModuleDict(encoders)
        k = spec.split
        if k:
            self.aligned = nn.ModuleDict({m: nn.Linear(spec.d, k) for m in spec.names})
            self.context = nn.ModuleDict({m: nn.Linear(spec.d, k) for m in spec.names})
        if spec.fusion == "attention":
            self.fusion = AttentionFusion(spec.names, k, spec.heads)
        elif spec.fusion == "mean":
            self.fusion = MeanFusion(spec.names, k)
        else:
            self.fusion = ConcatFusion(spec.names, 2 * k if k else spec.d, spec.d, spec.hidden)
        if spec.unimodal:
            width = {m: 2 * k if k else spec.d for m in spec.names}
            if spec.frozen_towers:
                width = {m: FROZEN_TOWERS[m][1] for m in spec.names}
            self.unimodal = nn.ModuleDict(
                {m: nn.Linear(width[m], self.fusion.out_dim) for m in spec.names}
            )
            if spec.shared_encoder:
                self.common = nn.Linear(self.fusion.out_dim, self.fusion.out_dim)
        self.dropout = nn.Dropout(spec.dropout)
        if spec.residual_head:
            self.residual = ResidualMLP(self.fusion.out_dim, spec.dropout)
        self.head = nn.Linear(self.fusion.out_dim, spec.num_classes)

    def _check(self, modalities: dict, present: torch.Tensor | None) -> torch.Tensor:
        missing = [m for m in self.spec.names if m not in modalities]
        if missing:
            raise ValueError(
                f"the batch lacks modalities {missing}; the model needs {self.spec.names}"
            )
        batch = len(modalities[self.spec.names[0]])
        if present is None:
            return torch.ones(batch, len(self.spec.names))
        if present.shape != (batch, len(self.spec.names)):
            raise ValueError(
                f"present has shape {tuple(present.shape)}, "
                f"expected {(batch, len(self.spec.names))}"
            )
        return present.to(torch.float32)

    def encode(self, modalities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality features, each ``(B, d)`` (before masking)."""
        return {m: self.encoders[m](modalities[m]) for m in self.spec.names}

    def features(self, modalities: dict[str, torch.Tensor], present=None) -> dict:
        """Everything a forward pass computes, for loss terms that need more than logits.

        Returns a dict with ``"h"`` (per-modality encoder outputs), ``"aligned"`` and
        ``"context"`` (per-modality parts, empty without ``split``), ``"present"`` (B, M)
        float, ``"joint"`` (B, width), ``"logits"`` (B, C) and ``"unimodal"`` (per-modality
        ``(B, width)``, empty without ``unimodal``).
        """
        mask = self._check(modalities, present)
        h = self.encode(modalities)
        if self.spec.split:
            aligned = {m: self.aligned[m](h[m]) for m in self.spec.names}
            context = {m: self.context[m](h[m]) for m in self.spec.names}
            parts = {m: [aligned[m], context[m]] for m in self.spec.names}
        else:
            aligned, context, parts = {}, {}, {m: [h[m]] for m in self.spec.names}
        joint = self.fusion(parts, mask)
        unimodal = {}
        if self.spec.unimodal:  # joint and unimodal reps on the unit sphere, as in FedMVP
            joint = self._on_sphere(joint)
            if self.spec.frozen_towers:  # no gradient reaches the towers; they are not state
                inputs = {m: _frozen_tower(m, modalities[m]) for m in self.spec.names}
            else:
                inputs = {m: torch.cat(parts[m], 1) for m in self.spec.names}
            unimodal = {m: self._on_sphere(self.unimodal[m](inputs[m])) for m in self.spec.names}
        if self.spec.residual_head:
            logits = self.head(self.residual(joint))
        else:
            logits = self.head(self.dropout(joint))
        return {
            "unimodal": unimodal,
            "h": h,
            "aligned": aligned,
            "context": context,
            "present": mask,
            "joint": joint,
            "logits": logits,
        }

    def _on_sphere(self, x: torch.Tensor) -> torch.Tensor:
        """A representation onto the unit sphere: through the shared encoder first when the
        spec has one (FedMVP's ``CommonEncoder``)."""
        if self.spec.shared_encoder:
            x = self.common(x)
        return nn.functional.normalize(x, dim=1)

    def embed(self, modalities: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        """The fused joint representation ``(B, width)``."""
        return self.features(modalities, present)["joint"]

    def forward(self, modalities: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        return self.features(modalities, present)["logits"]


def build_model(spec: ModelSpec, seed: int | None = None) -> nn.Module:
    """Build the network a spec describes; with ``seed``, with those initial weights.

    Any other spec with a ``build()`` method works too (e.g.
    :class:`fedlab_mm.broadcast.BroadcastSpec`): the engine needs only ``build``, ``names``
    and ``to_dict`` from a spec.
    """
    make = (lambda: MultimodalNet(spec)) if isinstance(spec, ModelSpec) else spec.build
    if seed is None:
        return make()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()
