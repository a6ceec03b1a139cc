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


# ---------------------------------------------------------------- sweep_slider
def _recorder():
    calls = []

    def draw(value):
        calls.append(value)
        print(f"point {value}")

    return calls, draw


def test_sweep_slider_draws_the_start_then_every_move(capsys):
    calls, draw = _recorder()
    panel = W.sweep_slider([0.05, 0.1, 0.3, 1.0], draw, name="labeled_fraction", value=0.1)
    assert calls == [0.1] and panel.value == 0.1 and panel.slider.value == 0.1
    assert panel.slider.description == "labeled_fraction"
    assert panel.widget.children == (panel.slider, panel.output)
    panel.slider.value = 1.0  # as a hand on the slider would
    assert calls == [0.1, 1.0] and "point 1.0" in capsys.readouterr().out
    panel.value = 0.05
    assert calls == [0.1, 1.0, 0.05] == panel.drawn and panel.slider.index == 0
    panel.value = 0.05  # no move, no redraw
    assert calls == [0.1, 1.0, 0.05]


def test_sweep_slider_starts_at_the_first_value_and_takes_a_dict_or_a_description():
    calls, draw = _recorder()
    sweep = {"small": 1, "large": 2}
    panel = W.sweep_slider(sweep, draw, description="model size")
    assert calls == ["small"] and panel.slider.options == ("small", "large")
    assert panel.slider.description == "model size"
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(values=[]), "values"),
        (dict(values=()), "values"),
        (dict(values=7), "values"),
        (dict(values="0.1"), "values"),
        (dict(values=[0.1, 0.3, 0.1]), "values"),
        (dict(value=0.2), "value"),
        (dict(draw="show"), "draw"),
        (dict(draw=None), "draw"),
        (dict(name=""), "name"),
        (dict(description=3), "description"),
    ],
)
def test_sweep_slider_rejects_bad_arguments_by_name(kwargs, argument):
    args = {"values": [0.1, 0.3], "draw": print, **kwargs}
    with pytest.raises(ValueError, match=rf"^{argument}="):
        W.sweep_slider(args.pop("values"), args.pop("draw"), **args)


def test_sweep_slider_refuses_a_value_off_the_sweep_and_stays_put():
    calls, draw = _recorder()
    panel = W.sweep_slider([0.0, 0.3], draw, name="fraction")
    with pytest.raises(ValueError, match=r"^value=0.2 is not one of the fraction values"):
        panel.value = 0.2
    assert panel.value == 0.0 and calls == [0.0]


def test_sweep_slider_in_a_kernel_replaces_the_figure_under_it():
    """In a real (headless) kernel with the inline backend, as a notebook runs it: after a move
    the output area holds the new point's print and figure, and nothing of the first."""
    import os

    import nbclient
    import nbformat

    first = (
        "import matplotlib.pyplot as plt\n"
        "import fedlab_mm as fm\n"
        "def draw(k):\n"
        "    print(f'point {k}')\n"
        "    plt.plot([0, k])\n"
        "    plt.show()\n"
        "panel = fm.widgets.sweep_slider([1, 2, 3], draw, name='k')\n"
        "panel"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(first), nbformat.v4.new_code_cell("panel.value = 3")]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline, as in Jupyter
    client = nbclient.NotebookClient(nb, timeout=120, store_widget_state=True)
    client.execute(env=env)
    shown = nb.cells[0].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in shown  # the cell shows the panel
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    (output,) = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    texts = [o["text"] for o in output if o["output_type"] == "stream"]
    images = [o for o in output if "image/png" in o.get("data", {})]
    assert texts == ["point 3\n"] and len(images) == 1
