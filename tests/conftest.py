import os

import pytest

# Models load from installed packages only (set before anything imports transformers).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FEDLAB_MM_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _same_random_state_for_every_test():
    """Seed Python, NumPy and torch before each test, so that no test depends on what ran
    before it (the order, or the worker under ``pytest -n 2``)."""
    import fedlab_mm as fm

    fm.set_seed(0)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty data cache for one test."""
    monkeypatch.setenv("FEDLAB_MM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def one_thread():
    """Run torch on one thread, as the effect measurements were run (the numbers then
    reproduce exactly), then restore the thread count. ``import fedlab_mm`` already sets one
    thread; this fixture keeps those tests exact when ``FEDLAB_MM_THREADS`` says otherwise."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
