import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import fedlab_mm as fm  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_sample_plots_return_figures(tmp_cache):
    ds = fm.data.digits(n_samples=40, seed=0, progress=False)
    fig = fm.viz.show_sample(ds, 0)
    assert len(fig.axes) == 3 and ds.meta["caption"][0] in fig.axes[2].get_title()
    fig = fm.viz.sample_grid(ds, "image", per_class=2)
    assert len(fig.axes) == 20
    fm.viz.sample_grid(ds, "audio", per_class=2)
    with pytest.raises(ValueError, match="not image-like"):
        fm.viz.sample_grid(ds, "text")
    with pytest.raises(ValueError, match="not in the dataset"):
        fm.viz.sample_grid(ds, "video")


def test_modality_strength_titles_show_probe_accuracy():
    ds = fm.data.synthetic(n_samples=400, seed=0)
    fig = fm.viz.modality_strength(ds)
    assert all("probe accuracy" in ax.get_title() for ax in fig.axes)
    assert len(fig.legends[0].get_texts()) == 10  # which colour is which class
    with pytest.raises(ValueError, match="not in the dataset"):
        fm.viz.probe_accuracy(ds, modalities=["video"])


def test_partition_plots():
    ds = fm.data.synthetic(n_samples=600, seed=0)
    part = fm.partition.dirichlet(ds, 8, alpha=0.3, seed=0)
    masked = fm.partition.missing_modalities(part, ds, rate=0.3, absent={"audio": [0]})
    fig = fm.viz.label_heatmap(part, ds, percent=True)
    assert fig.axes[0].get_xlabel() == "client"
    fm.viz.label_bubbles(part, ds)
    fig = fm.viz.compare_partitions({"a": part, "b": fm.partition.iid(ds, 8)}, ds)
    assert "JS distance" in fig.axes[0].get_title()
    fig = fm.viz.availability(masked)
    assert fig.axes[0].images[0].get_array()[1, 0] == 0.0  # client 0 has no audio
    with pytest.raises(ValueError, match="missing_modalities"):
        fm.viz.availability(part)
    fm.viz.skew_metrics(part, ds)
    fig = fm.viz.client_class_bars(part.label_counts(ds.y.numpy()), 10, percent=True)
    assert fig.axes[0].get_ylim()[1] >= 100


def test_client_samples_labels_rows_with_transforms(tmp_cache):
    ds = fm.data.digits(n_samples=30, modalities=("image", "audio"), seed=0, progress=False)
    part = fm.partition.feature_skew(fm.partition.iid(ds, 3), "image", kind="rotate", strength=60)
    fig = fm.viz.client_samples(part, ds, "image", per_client=2)
    assert "rotate 30" in fig.axes[2].get_ylabel()
    fm.viz.client_samples(part, ds, "audio", per_client=2)


def test_feature_plots():
    import pandas as pd
    import torch

    rows = [
        {"run": r, "round": t, "aligned~shared": 0.5, "context~shared": 0.2, "context~private": 0.1}
        for r in ("a", "b")
        for t in (1, 2)
    ]
    fig = fm.viz.recovery_curves(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    fig = fm.viz.feature_projection(
        {"x": torch.randn(30, 4), "y": torch.randn(30, 4)}, [0, 1, 2] * 10
    )
    assert len(fig.axes) == 2 and "PCA" in fig.axes[0].get_title()
    attention = torch.softmax(torch.randn(5, 4, 4), -1)
    fig = fm.viz.attention_map(attention, ["image", "audio"])
    assert fig.axes[0].get_yticklabels()[1].get_text() == "image context"
    with pytest.raises(ValueError, match="expected 6x6"):
        fm.viz.attention_map(attention, ["image", "audio", "text"])


def test_broadcast_plots():
    import numpy as np
    import pandas as pd

    fig = fm.viz.uplink_bars({"full": {"model": 500e3}, "lora": {"adapters": 30e3, "protos": 15e3}})
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["full", "lora"]
    assert any("45.0 KB" in t.get_text() for t in fig.axes[0].texts)
    w = np.full((3, 3), 1 / 3)
    fig = fm.viz.query_weights(w, np.ones((3, 10)), client_ids=[4, 5, 6])
    assert len(fig.axes) == 4 and [t.get_text() for t in fig.axes[1].get_xticklabels()] == [
        "4",
        "5",
        "6",
    ]
    table = pd.DataFrame({"a": np.linspace(0, 1, 10), "b": np.ones(10)})
    fig = fm.viz.per_class_accuracy(table, unseen=[8, 9], chance=0.1)
    assert "(unseen)" in fig.axes[0].get_xticklabels()[9].get_text()
    rows = [{"rank": r, "alpha": a, "method": "FedAlign", "accuracy": 0.8 + r / 100,
             "uplink_kb": 10.0 * r} for r in (1, 4) for a in (0.1, 1.0)]  # fmt: skip
    rows += [{"rank": 0, "alpha": a, "method": "full FedAvg", "accuracy": 0.9, "uplink_kb": 500.0}
             for a in (0.1, 1.0)]  # fmt: skip
    fig = fm.viz.rank_and_skew(pd.DataFrame(rows), 4, 0.1)
    assert "rank 4: 0.840" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_hetero_plots():
    import numpy as np
    import pandas as pd

    s = np.eye(4) * 0.5 + 0.5
    w = (1 - np.eye(4)) / 3
    fig = fm.viz.relevance_maps(s, w, ["a", "b", "c", "d"], [0, 0, 1, 1], title="t")
    assert len(fig.axes) == 4 and fig.axes[0].get_xticklabels()[2].get_text() == "c"
    assert len(fig.axes[0].lines) == 2  # one separator between the two groups, both directions
    rec = pd.DataFrame({"setting": ["x"] * 4, "seed": [0, 0, 1, 1], "noise": [0, 1, 0, 1],
                        "ARI": [1.0, 0.5, 0.8, 0.3]})  # fmt: skip
    fig = fm.viz.recovery_vs_noise(rec)
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "x: mean over seeds"
    acc = pd.DataFrame({"method": ["m1", "m1", "m2", "m2"], "size": ["32x2", "64x3"] * 2,
                        "accuracy": [0.6, 0.7, 0.65, 0.72]})  # fmt: skip
    fig = fm.viz.accuracy_by_size(acc)
    assert len(fig.axes[0].patches) == 4
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["m1", "m2"]
    panels = plt.subplots(1, 2)[1]  # into given axes: both panels of one figure
    assert fm.viz.accuracy_by_size(acc, ax=panels[1]) is panels[1].figure
    assert len(panels[1].patches) == 4 and not panels[0].patches


def test_grid_curves():
    import pandas as pd

    rows = [{"method": m, "seed": s, **fm.knobs.BASE, knob: v, "accuracy": 0.5 + 0.1 * s}
            for m in ("fedavg", "local") for s in range(2)
            for knob, v in (("alpha", 0.1), ("alpha", 1.0), ("missing_rate", 0.5))]  # fmt: skip
    fig = fm.viz.grid_curves(pd.DataFrame(rows), labels={"fedavg": "FedAvg"})
    assert [ax.get_title() for ax in fig.axes] == ["varying alpha", "varying missing_rate"]
    assert len(fig.axes[0].lines) == 3  # two methods and the dashed base line
    assert "2 seeds" in fig.axes[0].get_ylabel()
    assert fig.legends[0].get_texts()[0].get_text() == "FedAvg"
    with pytest.raises(ValueError, match="metric='nope'"):
        fm.viz.grid_curves(pd.DataFrame(rows), metric="nope")
    metrics = {"served_accuracy": "served", "accuracy": "trained"}
    labelled = pd.DataFrame(rows).assign(served_accuracy=0.4)
    labelled["label"] = labelled["method"].map({"fedavg": "FedAvg", "local": "local only"})
    bars = fm.viz.method_bars(labelled, metrics, title="t")
    ax = bars.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["FedAvg", "local only"]
    assert len(ax.patches) == 4 and ax.get_xlim()[0] == pytest.approx(0.3)
