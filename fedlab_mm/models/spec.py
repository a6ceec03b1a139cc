"""What a model is, as data: :class:`ModelSpec` (JSON-friendly, hashable), so every client and
the server build the same network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["ENCODER_KINDS", "FROZEN_TOWERS", "FUSIONS", "ModelSpec", "SpecMethods"]

#: Name -> (input shape, representation width) of FedMVP-style frozen unimodal towers.
FROZEN_TOWERS = {"image": ((1, 28, 28), 64), "text": ((384,), 384)}

ENCODER_KINDS = ("mlp", "image", "spectrogram")
FUSIONS = ("concat", "attention", "mean")


class SpecMethods:
    """``replace`` and ``to_dict`` shared by the frozen-dataclass model specs
    (:class:`ModelSpec`, ``mini_clip.BroadcastSpec``, ``hetero.HeteroSpec``)."""

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
        loss terms in :mod:`fedlab_mm.mcm_ram`. The joint embedding is then L2-normalised
        too, so that both live on the same sphere and go through the same classifier.
    frozen_towers : bool
        With ``unimodal``: read the unimodal representations off frozen pretrained towers
        (FedMVP's setting) instead of the trainable encoders: the public image tower of
        :mod:`fedlab_mm.pretrained` for ``image`` (1, 28, 28) and the MiniLM embedding itself for
        ``text`` (384,). Any other input of one dimension ``(d,)`` counts as the output of a
        frozen tower computed beforehand (e.g. :func:`fedlab_mm.towers.HFTower.featurize`: a
        CLIP or BERT embedding) and is read as it is. Only the projections train; the towers
        are never sent.
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
                own = FROZEN_TOWERS.get(name, (None,))[0] == tuple(shape)
                if not own and len(shape) != 1:
                    raise ValueError(
                        f"no frozen tower for {name!r} with shape {tuple(shape)}; there are "
                        f"{ {m: s for m, (s, _) in FROZEN_TOWERS.items()} }, and any (d,) "
                        "features a tower computed beforehand (fm.towers)"
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
