"""Cached, re-creatable tensors: a safetensors file per parameter set under the cache folder.

:func:`cached` is how the data sets (MNIST, caption embeddings, spectrograms) and the
pretrained models (:mod:`fedlab_mm.pretrained`, the FedMosaic base) are kept between runs."""

from __future__ import annotations

import hashlib
import json
import os
import warnings

from .. import config

__all__ = ["cached", "key"]

#: Bumped when the stored layout changes, so stale files are rebuilt, not misread.
CACHE_VERSION = 1


def key(params: dict) -> str:
    """A short hash of ``params`` (JSON, sorted keys): the cache file's name."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(name: str, params: dict, make, cache: bool):
    """Return ``make()`` (a dict of tensors), through a safetensors file keyed by params."""
    from safetensors.torch import load_file, save_file

    if not cache:
        return make()
    path = config.cache_dir() / f"{name}-{key({'v': CACHE_VERSION, **params})}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))
        except Exception as err:  # a truncated or foreign file: rebuild it
            warnings.warn(f"cache file {path} is unreadable ({err}); rebuilding it", stacklevel=3)
    tensors = make()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(tmp),
        metadata={"params": json.dumps(params, sort_keys=True, default=str)},
    )
    tmp.replace(path)
    return tensors
