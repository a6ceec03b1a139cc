"""Frozen pretrained towers from ``transformers``: real encoders in place of the kit's stand-ins.

:class:`HFTower` loads a model from a local folder (``save_pretrained`` output, or a hub
snapshot you downloaded) and turns images or strings into one feature vector each:

- CLIP (``model_type == "clip"``): ``get_image_features`` / ``get_text_features``, the shared
  image-text space;
- a plain encoder (ViT, BERT, MiniLM, ...): the mean of the last hidden states over the real
  tokens (patches), L2-normalised.

:meth:`HFTower.featurize` replaces a modality of a :class:`~fedlab_mm.data.MultimodalDataset`
by its features, computed once (cached on disk) on ``device`` (CUDA when there is one).
Features ``(d,)`` are what ``ModelSpec(unimodal=True, frozen_towers=True)`` reads as a frozen
tower's output, so FedMVP's recipe runs on them unchanged. The tower never trains and is never
sent: only the models on top of it are federated.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from . import config
from .data import MultimodalDataset, cached

__all__ = ["HFTower"]

# CLIP's published pixel normalisation (its image processor's defaults)
_CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
_CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
MODALITIES = ("image", "text")


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class HFTower:
    """A frozen image or text encoder from a local ``transformers`` model folder.

    Parameters
    ----------
    path : str or Path
        A folder with ``config.json`` and weights (and a tokenizer for text).
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
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ValueError(
                f"path={str(path)!r} is not a local model folder (no config.json); save one "
                "with save_pretrained, or download a snapshot first"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
        self.modality, self.batch_size, self.device = modality, batch_size, _device(device)
        cfg = AutoConfig.from_pretrained(self.path)
        self.kind = "clip" if cfg.model_type == "clip" else "encoder"
        loader = CLIPModel if self.kind == "clip" else AutoModel
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
        if images.ndim != 4:
            raise ValueError(f"images must be (n, C, H, W), got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[1] != self.channels:
            x = x.mean(1, keepdim=True).expand(-1, self.channels, -1, -1)
        x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        if self.channels == 3:
            x = (x - _CLIP_MEAN) / _CLIP_STD
        return x

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
        weights = sorted(
            p.name for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin")
        )
        stamp = [(w, (self.path / w).stat().st_size, int((self.path / w).stat().st_mtime))
                 for w in weights]  # fmt: skip
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
