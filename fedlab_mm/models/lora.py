"""LoRA adapters (Hu et al., ICLR 2022) through the ``peft`` library, for any torch model.

A LoRA layer keeps the pretrained weight ``W0`` frozen and adds a low-rank update:
``y = W0 x + (alpha / r) * B A x`` with ``A (r, d_in)`` random and ``B (d_out, r)`` zero at
the start, so an adapted model computes exactly what the pretrained one did until it trains.
Only ``A`` and ``B`` train, and in federated learning only they travel.

Which layers to adapt is read off the model, never typed in: :func:`layer_targets` lists its
linear and convolution layers in the order they run, :func:`attention_targets` the query
and value projections inside its attention blocks (``query``/``value`` in BERT,
``q_proj``/``v_proj`` in recent ViTs).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = [
    "layer_targets",
    "attention_targets",
    "add_lora",
    "is_adapter",
    "adapter_state",
    "layer_of",
]

QUERY_VALUE = ("query", "value", "q_proj", "v_proj", "q", "v")


def layer_targets(model: nn.Module, kinds=(nn.Linear, nn.Conv2d)) -> list[str]:
    """Names of the model's ``kinds`` layers, in registration order (low to high)."""
    return [name for name, module in model.named_modules() if isinstance(module, kinds) and name]


def attention_targets(model: nn.Module) -> list[str]:
    """Names of the query and value projections inside the model's attention blocks.

    A block counts as attention when its class name contains ``"Attention"``; its direct
    linear children named one of :data:`QUERY_VALUE` are returned (low to high).
    """
    found = []
    for name, module in model.named_modules():
        if "Attention" not in type(module).__name__:
            continue
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear) and child_name in QUERY_VALUE:
                found.append(f"{name}.{child_name}" if name else child_name)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no attention block with query/value projections "
            f"named {QUERY_VALUE}; pass target names from layer_targets(model) instead"
        )
    return found


def add_lora(model: nn.Module, targets: list[str], rank: int = 4, scale: float = 2.0) -> nn.Module:
    """Insert LoRA adapters into ``targets`` of ``model`` (in place) and freeze the rest.

    Parameters
    ----------
    model : nn.Module
    targets : list of str
        Layer names, e.g. from :func:`layer_targets` or :func:`attention_targets`.
    rank : int
        ``r``, the adapters' rank.
    scale : float
        ``alpha / r``: peft's ``lora_alpha`` is ``scale * rank``, so changing the rank does not
        change how strongly the adapters act.

    Returns the same model; its trainable parameters are exactly the adapters.
    """
    import peft

    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank={rank!r} must be an integer >= 1")
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale={scale} must be a finite number > 0")
    known = dict(model.named_modules())
    unknown = [t for t in targets if t not in known]
    if not targets or unknown:
        raise ValueError(
            f"targets={list(targets)} must name layers of the model; unknown: {unknown}"
        )
    config = peft.LoraConfig(
        r=int(rank), lora_alpha=float(scale) * int(rank), target_modules=list(targets)
    )
    model = peft.inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_(is_adapter(name))
    return model


def is_adapter(key: str) -> bool:
    """Whether a state or parameter name belongs to a LoRA adapter."""
    return ".lora_A." in key or ".lora_B." in key


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors of a model's state (what a LoRA client sends)."""
    return {k: v for k, v in model.state_dict().items() if is_adapter(k)}


def layer_of(key: str) -> str:
    """The adapted layer an adapter key belongs to: ``"enc.3.lora_A.default.weight"`` ->
    ``"enc.3"``."""
    if not is_adapter(key):
        raise ValueError(f"{key!r} is not an adapter key")
    return key.split(".lora_")[0]
