"""The pretrained base of FedMosaic's model family: an MLP over the frozen public image
tower's 64-d features, trained once on the public digits and cached on disk.

:data:`SIZE_DIMS` names the three sizes (width, depth); :mod:`.model` builds them."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .. import pretrained
from ..data import cached, public_digits

__all__ = ["IN_DIM", "SIZE_DIMS", "base_layers", "forward_base", "loaded_base"]


IN_DIM = pretrained.TOWER_WIDTH  # 64: the public tower's features
#: The three sizes of the family: name -> (width, depth).
SIZE_DIMS = {"small": (32, 2), "medium": (64, 3), "large": (128, 4)}


def base_layers(width: int, depth: int, num_classes: int = 10) -> tuple[list[nn.Linear], nn.Linear]:
    """Fresh hidden layers (``IN_DIM`` -> ``width``, ``depth`` of them) and a head."""
    dims = [IN_DIM] + [width] * depth
    return [nn.Linear(dims[i], dims[i + 1]) for i in range(depth)], nn.Linear(width, num_classes)


def forward_base(layers, x: torch.Tensor, record: list | None = None, head=None):
    """Hidden layers with ReLU (then ``head`` without, if given); ``record`` collects each
    layer's (input, output)."""
    for layer in [*layers, head] if head is not None else layers:
        out = layer(x)
        if record is not None:
            record.append((x, out))
        x = out if layer is head else torch.relu(out)
    return x


_PRETRAIN_STEPS = 300


@lru_cache(maxsize=8)
def _pretrained(width: int, depth: int) -> dict:
    """The base MLP of one size, trained on the public digits' tower features (seeded).

    Trained once per machine: the weights are kept in :func:`fedlab_mm.config.cache_dir`
    (one safetensors file per size, keyed by the recipe and the torch version), so test
    workers, notebook kernels and grid workers load them instead of training again.
    """
    params = {"width": width, "depth": depth, "steps": _PRETRAIN_STEPS, "lr": 3e-3, "seed": 0,
              "torch": torch.__version__}  # fmt: skip
    flat = cached("hetero-base", params, lambda: _train_base(width, depth), cache=True)
    return {
        "layers": [{k: flat[f"layers.{i}.{k}"] for k in ("weight", "bias")} for i in range(depth)],
        "head": {k: flat[f"head.{k}"] for k in ("weight", "bias")},
    }


def _train_base(width: int, depth: int) -> dict[str, torch.Tensor]:
    """Train one size's base MLP; its weights as a flat ``{"layers.0.weight": ...}`` dict."""
    pub = public_digits()
    x, y = pretrained.image_features(pub.modalities["image"]), pub.y
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(0)
        layers, head = base_layers(width, depth)
        params = [p for m in [*layers, head] for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=3e-3)
        for _ in range(_PRETRAIN_STEPS):
            loss = F.cross_entropy(head(forward_base(layers, x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    named = [(f"layers.{i}", m) for i, m in enumerate(layers)] + [("head", head)]
    return {
        f"{name}.{k}": v.detach().clone() for name, m in named for k, v in m.state_dict().items()
    }


def loaded_base(spec):
    """The pretrained hidden layers and head of ``spec``'s size (fresh modules each call)."""
    layers, head = base_layers(spec.width, spec.depth, spec.num_classes)
    state = _pretrained(spec.width, spec.depth)
    for layer, s in zip(layers, state["layers"]):
        layer.load_state_dict(s)
    head.load_state_dict(state["head"])
    return layers, head
