"""Run-time switches shared by every notebook: smoke mode, the data cache, torch's threads.

Smoke mode (``FEDLAB_MM_SMOKE=1``, set by ``make test``) shrinks sizes, rounds and
epochs so that every notebook runs in seconds. Notebooks never edit cells for it; they
ask :func:`scale` for each size instead, so a full and a smoke run execute the same code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar

__all__ = [
    "smoke",
    "scale",
    "cache_dir",
    "offline",
    "hub_allowed",
    "model_folder",
    "threads",
    "use_threads",
]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def smoke() -> bool:
    """Return True when ``FEDLAB_MM_SMOKE`` asks for a quick run.

    Examples
    --------
    >>> import os; os.environ["FEDLAB_MM_SMOKE"] = "1"
    >>> smoke()
    True
    """
    value = os.environ.get("FEDLAB_MM_SMOKE", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"FEDLAB_MM_SMOKE={value!r} is not understood; use 1 (smoke run) or 0 (full run)"
    )


def scale(full: T, smoke_value: T) -> T:
    """Pick ``smoke_value`` in smoke mode and ``full`` otherwise.

    This is the only place where smoke and full runs differ.

    Examples
    --------
    >>> n_rounds = scale(20, 2)
    """
    return smoke_value if smoke() else full


def cache_dir() -> Path:
    """Folder for cached, re-creatable data (audio spectrograms, text embeddings).

    ``FEDLAB_MM_CACHE`` wins; otherwise ``data/cache`` of a source checkout; otherwise
    ``~/.cache/fedlab_mm``. The folder is created on first use.
    """
    env = os.environ.get("FEDLAB_MM_CACHE")
    if env:
        path = Path(env)
    else:
        checkout_data = Path(__file__).resolve().parent.parent / "data"
        if checkout_data.is_dir():
            path = checkout_data / "cache"
        else:
            path = Path.home() / ".cache" / "fedlab_mm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def hub_allowed() -> bool:
    """Whether the user let the kit download models (``FEDLAB_MM_HUB=1``; default: no)."""
    value = os.environ.get("FEDLAB_MM_HUB", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"FEDLAB_MM_HUB={value!r} is not understood; use 1 (downloads allowed) or 0")


def offline() -> None:
    """Forbid model and data hubs for this process (called by every model loader).

    Models load from local folders (installed packages, ``save_pretrained`` output) or from
    the local Hugging Face cache, so a model that is not there fails at once with a clear
    message instead of waiting for a network that is not there. ``FEDLAB_MM_HUB=1`` lifts
    the ban, for readers who are online.
    """
    if hub_allowed():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


# a Hugging Face model id: "name" or "owner/name"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def model_folder(name) -> Path:
    """The local folder of a ``transformers`` model: ``name`` itself, or a hub id's snapshot.

    Parameters
    ----------
    name : str or Path
        A folder with a ``config.json`` (``save_pretrained`` output), or a Hugging Face model
        id such as ``"openai/clip-vit-base-patch32"``. An id is looked up in the local Hugging
        Face cache; it is downloaded only when ``FEDLAB_MM_HUB=1``.

    Raises
    ------
    ValueError
        A folder without ``config.json``, a string that is neither a folder nor a model id,
        or an id that is not in the local cache while downloads are off.
    """
    path = Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"path={str(name)!r} is not a local model folder (no config.json); save one "
                "with save_pretrained, or give a Hugging Face model id"
            )
        return path
    text = str(name)
    if not _HUB_ID.fullmatch(text) or text.startswith((".", "/", "~")):
        raise ValueError(
            f"model={text!r} is neither a local model folder nor a Hugging Face model id "
            "('owner/name')"
        )
    from huggingface_hub import snapshot_download

    online = hub_allowed()
    try:
        folder = Path(snapshot_download(text, local_files_only=not online))
    except Exception as error:  # noqa: BLE001 - every failure gets the same advice
        how = (
            "the download failed"
            if online
            else "it is not in the local Hugging Face cache and downloads are off"
        )
        raise ValueError(
            f"model={text!r}: {how} ({type(error).__name__}). Download it once (e.g. with "
            "FEDLAB_MM_HUB=1), or pass a local folder"
        ) from error
    if not (folder / "config.json").is_file():
        raise ValueError(f"model={text!r}: its snapshot {folder} has no config.json")
    return folder


def threads() -> int:
    """How many intra-op threads torch should use: ``FEDLAB_MM_THREADS``, default 1.

    Why one thread: the kit's models are small (tens of thousands of weights, batches of 32-64),
    so a second thread has little work to share and mostly waits on the first. Measured with
    ``python -m benchmarks.threads`` on the 2-core development machine (FedAvg, 10 clients,
    5 rounds on ``synthetic(3000)``, median of 5 runs): quiet, 0.55 s on one thread and 0.58 s
    on PyTorch's default of two; with one busy process on the other core, 0.55 s on one thread
    and 2.32 s (up to 2.95 s) on two, because the second thread spins while it waits for a
    core that is taken. A laptop is never quiet, and the test suite runs two workers at once,
    so 1 is the default everywhere: notebooks, tests, grid workers and benchmarks all import
    this package. ``FEDLAB_MM_THREADS=0`` keeps PyTorch's
    own default; any other positive number is used as given.
    """
    value = os.environ.get("FEDLAB_MM_THREADS", "1").strip()
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(
            f"FEDLAB_MM_THREADS={value!r} is not understood; use a whole number of threads "
            "(1 is the default, 0 keeps PyTorch's own default)"
        )
    return n


def use_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count to ``n`` (default :func:`threads`); return it.

    The BLAS and OpenMP pools that NumPy, SciPy and scikit-learn use get the same limit
    (``threadpoolctl``): their default of one thread per core spins the same way (a logistic
    regression of the frozen models took 6-8 s beside a busy process on two threads, 0.08 s
    on one). ``import fedlab_mm`` calls this once, so every notebook, test and grid worker runs
    with the same count. ``n=0`` leaves every count as it is.
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = threads() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be a whole number of threads >= 0 (0: torch's default)")
    if n:
        torch.set_num_threads(n)
        threadpool_limits(n)
    return torch.get_num_threads()
