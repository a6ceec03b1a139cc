"""Multimodal networks built from a spec, so every client and the server build the same one.

``MultimodalNet`` = one encoder per modality (to a common width ``d``) -> a fusion module ->
a linear classifier. Missing modalities contribute nothing, and no BatchNorm anywhere.

Modules: ``spec`` (:class:`ModelSpec`), ``layers`` (encoders, fusions), ``net``
(:class:`MultimodalNet`, :func:`build_model`), ``contract`` (what the engine needs from any
model and spec, as Protocols) and ``lora`` (low-rank adapters for any ``nn.Module``).
"""

from . import lora
from .contract import FederatedModel, ModelSpecLike, Specs
from .layers import (
    AttentionFusion,
    ConcatFusion,
    ImageEncoder,
    MeanFusion,
    MLPEncoder,
    ResidualMLP,
    SpectrogramEncoder,
)
from .net import MultimodalNet, build_model
from .spec import ENCODER_KINDS, FROZEN_TOWERS, FUSIONS, ModelSpec, SpecMethods

__all__ = [
    "ENCODER_KINDS",
    "FROZEN_TOWERS",
    "FUSIONS",
    "AttentionFusion",
    "ConcatFusion",
    "FederatedModel",
    "ImageEncoder",
    "MLPEncoder",
    "MeanFusion",
    "ModelSpec",
    "ModelSpecLike",
    "MultimodalNet",
    "ResidualMLP",
    "SpecMethods",
    "SpectrogramEncoder",
    "Specs",
    "build_model",
    "lora",
]
