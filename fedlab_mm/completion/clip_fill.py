"""FedMVP's completion in a real CLIP's feature space (:class:`CLIPFill`).

FedMVP fills a missing caption by captioning the image with a frozen model, and a missing
image by generating one from the caption, both prompted with the class. When the data are a
CLIP's features (``HFTower(tower, "image")`` and ``HFTower(tower, "text")``), both steps have
a direct counterpart in CLIP's shared space:

- missing **text**: CLIP's zero-shot classifier reads the image (cosine to the class
  prompts' embeddings, times CLIP's own logit scale), and the caption's feature is the
  probability-weighted mix of those prompt embeddings: a prompt-augmented caption, embedded;
- missing **image**: the caption's feature, moved across CLIP's *modality gap* (image and
  text features sit in two separate cones; Liang et al., NeurIPS 2022) by the difference of
  the client's mean image and mean text feature. DALL·E 2 (Ramesh et al., 2022) feeds a text
  embedding where an image embedding goes as its baseline without a prior; the shift is the
  kit's cheapest prior. Without a local sample of both modalities the shift is zero.

Only image and text can be filled; any other modality stays masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import towers
from ..mini_clip import class_anchors
from .base import Completion

__all__ = ["CLIPFill"]


class CLIPFill(Completion):
    """Fill missing image or text features with a frozen CLIP (see the module docstring).

    Parameters
    ----------
    tower : str or Path
        The CLIP (local folder or model id in the local cache) whose features the data hold.
    classes : list of str, optional
        Class names for the prompts (default: the data set's ``classes``).
    templates : tuple of str, optional
        Prompt templates with ``{w}`` (default :data:`fedlab_mm.mini_clip.CLIP_PROMPTS`).
    """

    name = "clip"
    FILLS = ("image", "text")

    def __init__(self, tower, classes=None, templates=None) -> None:
        if not towers.is_clip(tower):
            raise ValueError(f"tower={str(tower)!r} is not a CLIP (model_type 'clip')")
        self.tower, self.classes, self.templates = str(tower), classes, templates
        model = towers.clip_model(tower)
        self.logit_scale = float(model.logit_scale.exp())
        self.width = int(model.config.projection_dim)

    def fit(self, data):
        for m in self.FILLS:
            if m in data.names and tuple(data.modalities[m].shape[1:]) != (self.width,):
                raise ValueError(
                    f"CLIP completion needs {m!r} as this CLIP's features ({self.width},), got "
                    f"{tuple(data.modalities[m].shape[1:])}: featurize it with "
                    f"HFTower(tower, {m!r}) first"
                )
        super().fit(data)
        classes = list(self.classes or data.classes)
        if len(classes) < 2:
            raise ValueError(f"classes={classes} must name at least 2 classes")
        self.anchors_ = class_anchors(classes, self.tower, self.templates)  # (C, d)
        means = {}
        for m in self.FILLS:
            if m in data.names and data.present[:, data.names.index(m)].any():
                rows = data.present[:, data.names.index(m)]
                means[m] = F.normalize(data.modalities[m][rows].float(), dim=1).mean(0)
        self.gap_ = means["image"] - means["text"] if len(means) == 2 else torch.zeros(self.width)
        return self

    def unfillable(self):
        return [m for m in self.names_ if m not in self.FILLS]

    def class_probs(self, image_features: torch.Tensor) -> torch.Tensor:
        """CLIP's zero-shot class probabilities ``(n, C)`` of image features ``(n, d)``."""
        v = F.normalize(image_features.float(), dim=1)
        return torch.softmax(self.logit_scale * v @ self.anchors_.T, dim=1)

    def predict(self, data, target, rows):
        if target not in self.FILLS:
            return None
        source = "image" if target == "text" else "text"
        if source not in data.names:
            return None
        ok = data.available[rows, data.names.index(source)]
        x = data.modalities[source][rows].float()
        if target == "text":
            values = F.normalize(self.class_probs(x) @ self.anchors_, dim=1)
        else:
            values = F.normalize(F.normalize(x, dim=1) + self.gap_, dim=1)
        return values * ok[:, None], ok

    def __repr__(self) -> str:
        return f"CLIPFill({self.tower!r})"
