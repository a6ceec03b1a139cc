"""The model contract: what the engine needs from a model and from a spec, written down.

The engine (:mod:`fedlab_mm.federated`) never looks inside a network. It builds one from a
spec, reads and writes its ``state_dict``, and calls :meth:`~FederatedModel.features` in
training and ``model(modalities, present)`` in evaluation. Any network that keeps these
promises plugs in: :class:`~fedlab_mm.models.MultimodalNet`, FedAlign's
:class:`~fedlab_mm.mini_clip.BroadcastNet` and FedMosaic's
:class:`~fedlab_mm.hetero.HeteroNet` all do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, Union, runtime_checkable

import torch

__all__ = ["FederatedModel", "ModelSpecLike", "Specs"]


@runtime_checkable
class FederatedModel(Protocol):
    """A ``torch.nn.Module`` the engine can train, send and score.

    - ``features(modalities, present)`` returns a dict that holds ``"logits"`` ``(B, C)``.
      Loss terms read the rest: ``"h"`` (the fused representation), ``"aligned"`` and
      ``"context"`` (FedEPA's split parts), ``"unimodal"`` (FedMVP's), ``"v"`` (FedAlign's
      image embedding), and so on; a term that needs a key the model does not give fails
      with that key's name.
    - ``forward(modalities, present)`` returns the logits alone.
    - ``state_dict()`` / ``load_state_dict(state, strict=False)``: what travels. A model
      may keep parameters out of it (frozen towers are buffers or not registered at all).

    ``modalities`` maps a modality name to a batch tensor; ``present`` is the ``(B, M)``
    float mask of the modalities a sample has, in the spec's ``names`` order.
    """

    def features(self, modalities: dict[str, torch.Tensor], present=None) -> dict: ...

    def forward(self, modalities: dict[str, torch.Tensor], present=None) -> torch.Tensor: ...

    def state_dict(self, *args, **kwargs) -> dict: ...

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False): ...


@runtime_checkable
class ModelSpecLike(Protocol):
    """A frozen description of a network: every client of one spec builds the same one.

    - ``names``: the modalities the model reads, in the order of ``present``'s columns;
    - ``to_dict()``: plain data, so a checkpoint can check it resumes the same model;
    - ``build()``: a fresh :class:`FederatedModel` (the engine seeds the call).
      :class:`~fedlab_mm.models.ModelSpec` is built by
      :func:`~fedlab_mm.models.build_model` instead.
    """

    @property
    def names(self) -> list[str]: ...

    def to_dict(self) -> dict: ...


#: What a recipe's ``spec`` is: one spec for every client, or one per client id
#: (heterogeneous models, e.g. FedMosaic's sizes; then there is no global model).
Specs = Union[ModelSpecLike, Mapping[int, ModelSpecLike]]  # noqa: UP007 - a runtime alias
