"""Frozen pretrained towers from ``transformers``: real encoders in place of the kit's stand-ins.

:class:`HFTower` loads a model from a local folder (``save_pretrained`` output) or a Hugging
Face model id in the local cache (:func:`fedlab_mm.config.model_folder`) and turns images or
strings into one feature vector each:

- CLIP (``model_type == "clip"``): ``get_image_features`` / ``get_text_features``, the shared
  image-text space;
- a plain encoder (ViT, BERT, MiniLM, ...): the mean of the last hidden states over the real
  tokens (patches), L2-normalised.

:meth:`HFTower.featurize` replaces a modality of a :class:`~fedlab_mm.data.MultimodalDataset`
by its features, computed once (cached on disk) on ``device`` (CUDA when there is one).
Features ``(d,)`` are what ``ModelSpec(unimodal=True, frozen_towers=True)`` reads as a frozen
tower's output, so FedMVP's recipe runs on them unchanged. The tower never trains and is never
sent: only the models on top of it are federated.

For FedAlign, whose clients *adapt* the image tower, :func:`clip_image_encoder` and
:func:`clip_text_encoder` give CLIP's two sides as plain modules (fresh copies, frozen), and
:func:`clip_pixels` the preprocessing both :class:`HFTower` and they use.
"""

from __future__ import annotations

import copy
import hashlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import config
from .data import MultimodalDataset, cached

__all__ = [
    "HFTower",
    "clip_pixels",
    "is_clip",
    "weights_stamp",
    "clip_model",
    "clip_image_encoder",
    "clip_text_encoder",
    "CLIPImageEncoder",
    "CLIPTextEncoder",
    "tiny_clip",
]

# CLIP's published pixel normalisation (its image processor's defaults)
_CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
_CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
MODALITIES = ("image", "text")


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def clip_pixels(images: torch.Tensor, size: int, channels: int = 3) -> torch.Tensor:
    """Images ``(n, C, H, W)`` in [0, 1] as a vision tower reads them: grey copied to
    ``channels``, resized to ``size`` (bilinear) and, for 3 channels, CLIP's normalisation."""
    if images.ndim != 4:
        raise ValueError(f"images must be (n, C, H, W), got shape {tuple(images.shape)}")
    x = images.float()
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True).expand(-1, channels, -1, -1)
    if tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels == 3:
        x = (x - _CLIP_MEAN.to(x.device)) / _CLIP_STD.to(x.device)
    return x


def is_clip(folder) -> bool:
    """Whether the model folder (or id) holds a CLIP (``model_type == "clip"``)."""
    import json

    meta = json.loads((config.model_folder(folder) / "config.json").read_text())
    return meta.get("model_type") == "clip"


def weights_stamp(folder) -> list:
    """Name, size and modification time of each weight file: what a cache key needs to notice
    new weights in the same folder."""
    folder = config.model_folder(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    return [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]


class CLIPImageEncoder(nn.Module):
    """CLIP's image side as a module: images ``(B, C, H, W)`` in [0, 1] -> ``(B, d)`` image
    embeddings (before normalisation), what ``CLIPModel.get_image_features`` computes."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.vision_model, self.visual_projection = clip.vision_model, clip.visual_projection
        cfg = clip.config.vision_config
        self.size, self.channels = int(cfg.image_size), int(cfg.num_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = clip_pixels(images, self.size, self.channels)
        return self.visual_projection(self.vision_model(pixel_values=pixels).pooler_output)


class CLIPTextEncoder(nn.Module):
    """CLIP's text side as a module: tokens -> ``(B, d)`` text embeddings (before
    normalisation), what ``CLIPModel.get_text_features`` computes."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.text_model, self.text_projection = clip.text_model, clip.text_projection

    def forward(self, input_ids, attention_mask=None, **_) -> torch.Tensor:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.text_projection(out.pooler_output)


@lru_cache(maxsize=4)
def _clip_model(folder: str, stamp: tuple):
    """The CLIP in ``folder`` and its tokenizer (or None), loaded once per process (``stamp``
    notices new weights); callers take deep copies of its parts."""
    from transformers import AutoTokenizer, CLIPModel

    with _no_bars():
        model = CLIPModel.from_pretrained(folder).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(folder) if _has_tokenizer(folder) else None
    return model, tokenizer


@contextmanager
def _no_bars():
    """No transformers progress bar inside: a weight-loading bar per model is noise."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _has_tokenizer(folder: str) -> bool:
    names = {p.name for p in Path(folder).iterdir()}
    return bool(names & {"tokenizer.json", "vocab.json", "vocab.txt", "tokenizer_config.json"})


def _clip(name):
    config.offline()
    if not is_clip(name):
        raise ValueError(
            f"tower={str(name)!r} is not a CLIP (model_type 'clip'): FedAlign needs an image "
            "tower with a text side in the same space"
        )
    folder = config.model_folder(name)
    return folder, _clip_model(str(folder.resolve()), tuple(weights_stamp(folder)))


def _frozen(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).requires_grad_(False)


def clip_model(name):
    """The process's one loaded ``CLIPModel`` for ``name``, shared and read-only (for its
    ``config`` and ``logit_scale``; take :func:`clip_image_encoder` to train on it)."""
    return _clip(name)[1][0]


def clip_image_encoder(name) -> CLIPImageEncoder:
    """A fresh, frozen copy of the image side of the CLIP ``name`` (folder or model id)."""
    _, (model, _) = _clip(name)
    return _frozen(CLIPImageEncoder(model))


def clip_text_encoder(name):
    """``(tokenizer, model)``: the text side of the CLIP ``name`` (a fresh, frozen
    :class:`CLIPTextEncoder`) and its tokenizer."""
    folder, (model, tokenizer) = _clip(name)
    if tokenizer is None:
        raise ValueError(f"tower={str(name)!r}: the folder {folder} has no tokenizer files")
    return tokenizer, _frozen(CLIPTextEncoder(model))


class HFTower:
    """A frozen image or text encoder from a local ``transformers`` model folder.

    Parameters
    ----------
    path : str or Path
        A folder with ``config.json`` and weights (and a tokenizer for text), or a Hugging
        Face model id in the local cache (see :func:`fedlab_mm.config.model_folder`).
    modality : {"image", "text"}
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    batch_size : int
    """

    def __init__(self, path, modality: str = "image", device=None, batch_size: int = 64) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPModel

        config.offline()
        if modality not in MODALITIES:
            raise ValueError(f"modality={modality!r} must be one of {MODALITIES}")
        self.path = config.model_folder(path)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
        self.modality, self.batch_size, self.device = modality, batch_size, _device(device)
        cfg = AutoConfig.from_pretrained(self.path)
        self.kind = "clip" if cfg.model_type == "clip" else "encoder"
        loader = CLIPModel if self.kind == "clip" else AutoModel
        with _no_bars():
            self.model = loader.from_pretrained(self.path).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path) if modality == "text" else None
        vision = getattr(cfg, "vision_config", cfg)
        self.image_size = int(getattr(vision, "image_size", 224))
        self.channels = int(getattr(vision, "num_channels", 3))

    def __repr__(self) -> str:
        return f"HFTower({str(self.path)!r}, modality={self.modality!r}, kind={self.kind!r})"

    # ------------------------------------------------------------------ features
    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        return clip_pixels(images, self.image_size, self.channels)

    @torch.no_grad()
    def _batch(self, batch) -> torch.Tensor:
        if self.modality == "image":
            pixels = self._pixels(batch).to(self.device)
            if self.kind == "clip":
                out = self.model.get_image_features(pixel_values=pixels)
            else:
                hidden = self.model(pixel_values=pixels).last_hidden_state
                out = hidden.mean(1)
        else:
            tokens = self.tokenizer(list(batch), padding=True, truncation=True,
                                    return_tensors="pt").to(self.device)  # fmt: skip
            if self.kind == "clip":
                out = self.model.get_text_features(**tokens)
            else:
                hidden = self.model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).float()
                out = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        out = getattr(out, "pooler_output", out)  # some versions return a model output
        return F.normalize(out.float(), dim=-1).cpu()

    def features(self, inputs) -> torch.Tensor:
        """``(n, d)`` unit feature vectors of images ``(n, C, H, W)`` in [0, 1] or of a list of
        strings, in batches."""
        if self.modality == "text" and (isinstance(inputs, str) or not all(
                isinstance(t, str) for t in inputs)):  # fmt: skip
            raise ValueError("a text tower takes a list of strings")
        chunks = [self._batch(inputs[i : i + self.batch_size])
                  for i in range(0, len(inputs), self.batch_size)]  # fmt: skip
        if not chunks:
            raise ValueError("inputs is empty")
        return torch.cat(chunks)

    def featurize(self, dataset: MultimodalDataset, modality: str | None = None,
                  texts=None, cache: bool = True) -> MultimodalDataset:  # fmt: skip
        """``dataset`` with ``modality`` (default: the tower's) replaced by this tower's
        features ``(d,)``, computed once and cached. Images are read from the data set; a
        text tower reads ``texts`` (one string per row, default ``dataset.meta["caption"]``).
        Rows missing that modality get zeros (they stay marked missing)."""
        modality = modality or self.modality
        if modality not in dataset.names:
            raise ValueError(f"modality={modality!r} is not in the data set: {dataset.names}")
        if self.modality == "text":
            texts = list(dataset.meta.get("caption", [])) if texts is None else list(texts)
            if len(texts) != len(dataset):
                raise ValueError(
                    f"texts needs one string per row ({len(dataset)}), got {len(texts)}"
                )
            source = "\n".join(texts).encode()
        else:
            source = dataset.modalities[modality].numpy().tobytes()
        stamp = weights_stamp(self.path)
        digest = hashlib.sha256(source).hexdigest()
        params = {"tower": str(self.path.resolve()), "weights": stamp, "kind": self.kind,
                  "modality": self.modality, "data": digest}  # fmt: skip

        def make() -> dict:
            x = texts if self.modality == "text" else dataset.modalities[modality]
            return {"z": self.features(x)}

        z = cached("tower", params, make, cache)["z"]
        keep = dataset.present[:, dataset.names.index(modality)]
        z = torch.where(keep[:, None], z, torch.zeros_like(z))
        return dataset.replace(modalities={**dataset.modalities, modality: z})


# ----------------------------------------------------------------- a CLIP for offline use
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-()/&"


def tiny_clip(folder, seed: int = 0, width: int = 32, layers: int = 2, image_size: int = 30,
              projection_dim: int = 16) -> Path:  # fmt: skip
    """Save a tiny CLIP with **random** weights and a character-level CLIP tokenizer to
    ``folder``, and return the folder.

    It loads through the same code as ``openai/clip-vit-base-patch32`` (the same classes, a
    real ``CLIPTokenizer``), so everything that takes a CLIP can be run and tested offline.
    Its features know nothing: results on it are about the plumbing, never about CLIP.
    """
    import json

    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:  # every character alone (inside a word) and at the end of a word
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")  # no merges: one token per character
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=77)  # fmt: skip
    tokenizer.save_pretrained(folder)
    side = {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": layers,
            "num_attention_heads": 4}  # fmt: skip
    cfg = CLIPConfig(
        text_config={**side, "vocab_size": len(vocab), "max_position_embeddings": 77,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**side, "image_size": image_size, "patch_size": max(2, image_size // 5)},
        projection_dim=projection_dim,
    )  # fmt: skip
    with _no_bars(), torch.random.fork_rng():
        torch.manual_seed(seed)
        CLIPModel(cfg).save_pretrained(folder)
    return folder
