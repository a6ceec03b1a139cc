import os
import subprocess
import sys

import pytest

import fedlab_mm as fm
from fedlab_mm import config


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_smoke_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("FEDLAB_MM_SMOKE", value)
    assert fm.smoke() is expected
    assert fm.scale(100, 3) == (3 if expected else 100)


def test_smoke_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv("FEDLAB_MM_SMOKE", "maybe")
    with pytest.raises(ValueError, match="FEDLAB_MM_SMOKE"):
        fm.smoke()


def test_cache_dir_follows_environment(tmp_cache):
    assert fm.config.cache_dir() == tmp_cache
    assert tmp_cache.is_dir()


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import random, numpy as np, torch, matplotlib;"
        "s = (random.getstate(), np.random.get_state()[1].tolist(), torch.initial_seed());"
        "rc = dict(matplotlib.rcParams);"
        "import fedlab_mm;"
        "assert s == (random.getstate(), np.random.get_state()[1].tolist(), torch.initial_seed());"
        "assert rc == dict(matplotlib.rcParams);"
        "assert set(fedlab_mm.__all__) <= set(dir(fedlab_mm))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("value", "expected"), [(None, 1), ("2", 2), ("1", 1)])
def test_import_sets_torch_threads_from_the_environment(value, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "FEDLAB_MM_THREADS"}
    if value is not None:
        env["FEDLAB_MM_THREADS"] = value
    code = "import torch, fedlab_mm; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == expected


def test_threads_rejects_unclear_values(monkeypatch):
    for bad in ("two", "-1", "1.5"):
        monkeypatch.setenv("FEDLAB_MM_THREADS", bad)
        with pytest.raises(ValueError, match="FEDLAB_MM_THREADS"):
            fm.config.threads()
    with pytest.raises(ValueError, match="n=-2"):
        fm.config.use_threads(-2)


def test_zero_threads_keeps_torchs_count(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("FEDLAB_MM_THREADS", "0")
    assert fm.config.use_threads() == before


def test_import_limits_the_blas_pools_to_the_same_thread_count():
    # NumPy's and scikit-learn's BLAS/OpenMP pools spin like torch's when another process
    # shares the cores, so import fedlab_mm gives them the same one thread
    code = (
        "import fedlab_mm\nfrom threadpoolctl import threadpool_info\n"
        "print(sorted({p['num_threads'] for p in threadpool_info()}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "FEDLAB_MM_THREADS"}
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]"


def _fake_hub_cache(root, repo_id):
    """The Hugging Face cache's layout for one model: refs/main -> snapshots/<hash>/."""
    folder = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_model_folder_takes_folders_and_cached_hub_ids(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("FEDLAB_MM_HUB", raising=False)
    snapshot = _fake_hub_cache(tmp_path / "hub", "someone/tiny-model")
    assert config.model_folder(snapshot) == snapshot
    assert config.model_folder("someone/tiny-model").resolve() == snapshot.resolve()
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        config.model_folder("someone/other-model")
    with pytest.raises(ValueError, match="no config.json"):
        config.model_folder(tmp_path)
    with pytest.raises(ValueError, match="neither a local model folder nor"):
        config.model_folder("./no/such/folder")


def test_the_hub_switch_is_read_strictly(monkeypatch):
    monkeypatch.setenv("FEDLAB_MM_HUB", "maybe")
    with pytest.raises(ValueError, match="FEDLAB_MM_HUB='maybe'"):
        config.hub_allowed()
    monkeypatch.setenv("FEDLAB_MM_HUB", "1")
    assert config.hub_allowed()
