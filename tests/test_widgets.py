import time

import numpy as np
import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import widgets as W

DS = fm.data.synthetic(n_samples=2000, seed=0)


@pytest.mark.parametrize("scheme", W.SCHEMES)
def test_build_partition_for_every_scheme(scheme):
    part = W.build_partition(
        DS, scheme=scheme, num_clients=10, missing={"audio": 0.5}, labeled_fraction=0.2
    )
    assert part.num_clients == 10 and part.present is not None and part.labeled is not None
    with pytest.raises(ValueError):
        W.build_partition(DS, scheme="nope")


def test_explorer_redraws_in_place_when_a_slider_moves():
    explorer = W.partition_explorer(DS, num_clients=10)
    first = explorer.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    explorer.controls["alpha"].value = 0.01
    assert explorer.image.value != first
    explorer.missing["text"].value = 0.6
    assert explorer.partition().present is not None
    assert len(explorer.timings) == 3


def test_explorer_reports_impossible_settings_instead_of_crashing():
    small = fm.data.synthetic(n_samples=60, n_classes=2, seed=0)
    y = torch.zeros(60, dtype=torch.long)
    y[:2] = 1  # class 1 has two samples
    small = small.replace(y=y)
    explorer = W.PartitionExplorer(small, num_clients=5)
    explorer.controls["scheme"].value = "pathological"
    explorer.controls["classes_per_client"].value = 1
    picture, redraws = explorer.image.value, len(explorer.timings)
    explorer.controls["num_clients"].value = 30  # 30 one-class clients: some get no samples
    assert "no samples" in explorer.status.value  # the error is shown in the panel ...
    assert explorer.image.value == picture and len(explorer.timings) == redraws  # ... plot kept


def test_slider_ranges_are_safe_at_both_ends():
    explorer = W.PartitionExplorer(DS, num_clients=5)
    for name, ctrl in explorer.controls.items():
        if name == "scheme":
            continue
        for value in (ctrl.min, ctrl.max):
            ctrl.value = value
            assert "color" not in explorer.status.value, (name, value, explorer.status.value)


def test_redraw_is_fast_for_50_clients_on_5000_samples():
    # The redraw's own CPU time, not wall time: under make test two workers and their notebook
    # kernels share the two cores, and a fresh-clone run beside another notebook run saw a
    # 0.51 s wall-clock median (the old test's limit was 0.4 s). Measured, process CPU time per
    # redraw over 12 redraws, 5 runs with one notebook run busy on the other core: 0.27-0.28 s
    # (wall 0.27-0.29 s). The limit, 0.5 s, is what a slider can take and still feel live.
    explorer = W.PartitionExplorer(fm.data.synthetic(n_samples=5000, seed=0), num_clients=50)
    explorer.timings.clear()
    start = time.process_time()
    for alpha in np.geomspace(1e-3, 1e3, 12):
        explorer.controls["alpha"].value = float(alpha)
    assert len(explorer.timings) == 12  # every move redrew
    assert (time.process_time() - start) / 12 < 0.5
