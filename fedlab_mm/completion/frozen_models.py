"""FedMVP's idea with the frozen models the kit has offline (:mod:`fedlab_mm.pretrained`)."""

from __future__ import annotations

import numpy as np
import torch

from .. import pretrained
from ..data import speech
from .base import Completion
from .clip_fill import CLIPFill

__all__ = ["Frozen"]


class Frozen(Completion):
    """FedMVP's idea with the frozen models the kit has offline (:mod:`fedlab_mm.pretrained`).

    - missing **text**: the frozen public image classifier gives class probabilities; the
      caption is their mix of prompt-augmented class prototypes (MiniLM embeddings);
    - missing **image**: the frozen text-to-image generator renders the sample's caption;
    - missing **audio**: the class is read off the image and caption (frozen classifiers)
      and eSpeak NG speaks that word with a random voice (``AudioConfig`` as in the data).

    A row without the modality its generator needs stays masked. For the digits' modality
    names only.

    With ``tower`` (a real CLIP, folder or model id) the data are that CLIP's features and
    the fill is :class:`~fedlab_mm.completion.clip_fill.CLIPFill`: zero-shot captions and
    gap-shifted images in CLIP's space, for any class names; ``classes`` and ``templates``
    go to it.
    """

    name = "frozen"
    KNOWN = ("image", "audio", "text")

    def __init__(self, audio=None, seed: int = 0, tower=None, classes=None,
                 templates=None) -> None:  # fmt: skip
        self.audio, self.seed = audio, seed
        self.clip = None if tower is None else CLIPFill(tower, classes, templates)

    def fit(self, data):
        if self.clip is not None:
            self.clip.fit(data)
            self.names_ = data.names
            return self
        unknown = [m for m in data.names if m not in self.KNOWN]
        if unknown:
            raise ValueError(
                f"frozen completion knows the digits' modalities {self.KNOWN}, not {unknown}"
            )
        for m, shape in (("image", (1, 28, 28)), ("text", (384,))):
            if m in data.names and tuple(data.modalities[m].shape[1:]) != shape:
                raise ValueError(
                    f"frozen completion needs {m} shaped {shape} as in fm.data.digits(), "
                    f"got {tuple(data.modalities[m].shape[1:])}"
                )
        return super().fit(data)

    def _class_probs(self, data, rows):
        """Mean class probabilities of the frozen classifiers over the available views."""

        total, count = torch.zeros(len(rows), 10), torch.zeros(len(rows), 1)
        for m, classify in (
            ("image", pretrained.classify_images),
            ("text", pretrained.classify_text),
        ):
            if m in data.names:
                use = data.available[rows, data.names.index(m)]
                if use.any():
                    total[use] += classify(data.modalities[m][rows[use]])
                    count[use] += 1
        return total / count.clamp_min(1), count.flatten() > 0

    def unfillable(self):
        return [] if self.clip is None else self.clip.unfillable()

    def predict(self, data, target, rows):
        if self.clip is not None:
            return self.clip.predict(data, target, rows)
        if target == "text":
            if "image" not in data.names:
                return None
            ok = data.available[rows, data.names.index("image")]
            probs = pretrained.classify_images(data.modalities["image"][rows[ok]])
            values = torch.zeros(len(rows), pretrained.caption_prototypes().shape[1])
            values[ok] = torch.nn.functional.normalize(
                probs @ pretrained.caption_prototypes(), dim=1
            )
            return values, ok
        if target == "image":
            if "text" not in data.names:
                return None
            ok = data.available[rows, data.names.index("text")]
            values = torch.zeros(len(rows), 1, 28, 28)
            values[ok] = pretrained.text_to_image(data.modalities["text"][rows[ok]])
            return values, ok

        probs, ok = self._class_probs(data, rows)
        shape = data.modalities["audio"].shape[1:]
        values = torch.zeros(len(rows), *shape)
        if ok.any():
            labels = probs[ok].argmax(1).numpy()
            config = self.audio or speech.AudioConfig()
            rng = np.random.default_rng([self.seed, len(rows)])
            spec, _ = speech.render_clips(labels, config, rng, progress=False)
            if tuple(spec.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"generated audio has shape {tuple(spec.shape[1:])}, the data {tuple(shape)}:"
                    " pass Frozen(audio=...) with the AudioConfig the data were made with"
                )
            values[ok] = spec
        return values, ok

    def __repr__(self) -> str:
        if self.clip is not None:
            return f"Frozen(tower={self.clip.tower!r})"
        return f"Frozen(seed={self.seed})"
