"""Grids, their cache, the claims table and the ``fedlab-mm`` command (fedlab_mm.experiments)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import experiments as E
from fedlab_mm.recipes import Scale
from tests.known import assert_matches_a_record

TINY = Scale(n_samples=600, num_clients=4, rounds=1, epochs=1)


def test_settings_from_sweeps_one_knob_at_a_time_and_keeps_the_base_once():
    out = E.settings_from({"alpha": [0.1, 1.0, 10], "missing_rate": [0.0, 0.5]})
    assert out == [{}, {"alpha": 0.1}, {"alpha": 10}, {"missing_rate": 0.5}]
    with pytest.raises(ValueError, match="alfa.*the knobs are"):
        E.settings_from({"alfa": [1]})


def test_bad_names_and_values_list_what_is_allowed():
    with pytest.raises(ValueError, match="bogus.*valid methods are.*fedavg.*rela"):
        E.grid(["fedavg", "bogus"], {}, seeds=1, scale=TINY, cache=False)
    with pytest.raises(ValueError, match="skew.*the knobs are.*alpha"):
        E.grid(["fedavg"], [{"skew": 1}], seeds=1, scale=TINY, cache=False)
    for knob, value in (("missing_rate", 1.5), ("alpha", 0), ("labeled_fraction", 0.0)):
        with pytest.raises(ValueError, match=f"{knob}={value}"):
            E.grid(["fedavg"], [{knob: value}], seeds=1, scale=TINY, cache=False)
    with pytest.raises(ValueError, match="seeds=0"):
        E.grid(["fedavg"], {}, seeds=0, scale=TINY, cache=False)
    with pytest.raises(ValueError, match="n_samples=50"):
        Scale(n_samples=50)
    with pytest.raises(ValueError, match="is not known.*valid methods"):
        fm.recipes.run_cell("fedsgd", {}, 0, TINY)


def test_grid_is_deterministic_and_resumes_from_its_cache(tmp_path):
    kw = dict(scale=TINY, progress=False)
    settings = [{"alpha": 0.3}, {"labeled_fraction": 0.5}]
    first = E.grid(["fedavg", "local"], settings, seeds=[0, 1], cache=tmp_path, **kw)
    assert len(first) == 8 and not first.cached.any()
    assert first.accuracy.between(0, 1).all() and first.served_accuracy.between(0, 1).all()
    assert first.query("method == 'local'").server_accuracy.isna().all()  # no global model
    assert (first.query("method == 'local'").uplink_kb == 0).all()
    again = E.grid(["fedavg", "local"], settings, seeds=[0, 1], cache=False, **kw)
    cols = ["method", "seed", *fm.knobs.KNOBS, "accuracy", "served_accuracy", "server_accuracy"]
    pd.testing.assert_frame_equal(first[cols], again[cols])  # same seed, same numbers
    # drop one finished cell: a re-run reads the other seven and recomputes that one
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 8
    files[0].unlink()
    resumed = E.grid(["fedavg", "local"], settings, seeds=[0, 1], cache=tmp_path, **kw)
    assert resumed.cached.sum() == 7
    pd.testing.assert_frame_equal(first[cols], resumed[cols])
    # a different scale is a different cell
    longer = Scale(**{**TINY.__dict__, "rounds": 2})
    other = E.grid(["fedavg"], [{"alpha": 0.3}], [0], scale=longer, cache=tmp_path, progress=False)
    assert not other.cached.any()


def test_grid_in_two_processes_gives_the_one_process_numbers(tmp_path):
    kw = dict(seeds=[0], scale=TINY, progress=False, cache=False)
    one = E.grid(["fedavg", "local"], {"alpha": [0.3]}, processes=1, **kw)
    two = E.grid(["fedavg", "local"], {"alpha": [0.3]}, processes=2, **kw)
    np.testing.assert_allclose(one.accuracy, two.accuracy, atol=1e-6)


# Each method's record on one small cell (600 digits, 4 clients, 2 rounds of 1 epoch,
# Dirichlet 0.5, 50% missing, seed 0; one torch thread), as measured when this was written:
# accuracy, served accuracy, server accuracy (NaN: no global model), uplink kB. Runs are
# deterministic on one CPU, so a change here means a method's recipe or the engine changed; the
# tolerance allows two or three test samples either way. One record per CPU measured: across
# CPUs, rounding alone moves some of these by up to 0.04 (tests/known.py). FedProx (mu 0.01)
# and ALA still match FedAvg after 2 rounds at this size; their effects are measured in
# tests/effects.py.
KNOWN = {  # method: {CPU: record} (tests/known.py)
    "fedavg": {"A": (0.3862, 0.2329, 0.2857, 158.12), "B": (0.3951, 0.2260, 0.2857, 158.12)},
    "fedprox": {"A": (0.3862, 0.2329, 0.2857, 158.12), "B": (0.3951, 0.2260, 0.2857, 158.12)},
    "local": {"A": (0.4344, 0.2842, math.nan, 0.00), "B": (0.4344, 0.2842, math.nan, 0.00)},
    "ala": {"A": (0.3862, 0.2329, 0.2857, 158.12), "B": (0.3951, 0.2329, 0.2857, 158.12)},
    "fedepa": {"A": (0.3862, 0.1787, 0.2381, 145.70), "B": (0.4020, 0.2013, 0.2381, 145.70)},
    "zero_fill": {"A": (0.3897, 0.2361, 0.2857, 158.12), "B": (0.4022, 0.2327, 0.2857, 158.12)},
    "knn_fill": {"A": (0.4000, 0.1691, 0.2857, 158.12), "B": (0.4125, 0.2095, 0.2857, 158.12)},
    "frozen_fill": {"A": (0.4298, 0.2008, 0.2857, 158.12), "B": (0.4298, 0.2008, 0.2857, 158.12)},
    "cka": {"A": (0.3473, 0.2224, 0.3333, 158.12), "B": (0.3473, 0.2244, 0.3333, 158.12)},
    "fedmvp": {"A": (0.4318, 0.1070, 0.3333, 179.24), "B": (0.4229, 0.1070, 0.3333, 179.24)},
    "fedalign": {"A": (0.6220, 0.6465, 0.7143, 48.68), "B": (0.6246, 0.6246, 0.7143, 48.68)},
    "full_fedavg": {"A": (0.6872, 0.6265, 0.7619, 501.50), "B": (0.6872, 0.6233, 0.8095, 501.50)},
    "rela": {"A": (0.7396, 0.6799, math.nan, 10.31), "B": (0.7108, 0.7231, math.nan, 10.31)},
    "sized_local": {"A": (0.7128, 0.6585, math.nan, 0.00), "B": (0.7353, 0.6951, math.nan, 0.00)},
}


def test_every_method_is_known():
    assert set(KNOWN) == set(fm.recipes.METHODS)


@pytest.mark.parametrize("method", list(fm.recipes.METHODS))
def test_every_method_gives_its_known_record_on_a_cell_with_missing_modalities(method):
    scale = Scale(**{**TINY.__dict__, "rounds": 2, "last": 1})  # the final round, as measured
    row = fm.recipes.run_cell(method, {"missing_rate": 0.5, "alpha": 0.5}, seed=0, scale=scale)
    got = [row[k] for k in ("accuracy", "served_accuracy", "server_accuracy", "uplink_kb")]
    # 0.1 on the server accuracy: its test set has 21 samples
    assert_matches_a_record(method, got, KNOWN[method], tol=(0.02, 0.02, 0.1, 0.01))
    assert row["seconds"] > 0


def test_image_only_methods_drop_captions_and_imageless_samples():
    setting = fm.knobs.check_setting({"missing_rate": 0.6})
    clients, server = fm.recipes._clients(setting, 0, TINY)
    views, _, test = fm.recipes.METHODS["fedalign"].build(clients, server, TINY)
    for raw, view in zip(clients, views):
        assert view.train.names == ["image"]
        assert len(view.train) == int(raw.train.present[:, 0].sum()) > 0
        assert view.train.present.all()


def _claim_df(diffs):
    rows = []
    for seed, d in enumerate(diffs):
        for method, acc in (("fedepa", 0.5 + d), ("fedavg", 0.5)):
            rows.append({"method": method, "seed": seed, **fm.knobs.BASE, "alpha": 0.1,
                         "labeled_fraction": 0.1, "accuracy": acc, "uplink_kb": 1.0})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "diffs, verdict",
    [
        ([0.10, 0.08, 0.09], "holds"),  # every seed far above the 1-point margin
        ([0.004, 0.006, 0.005], "does not hold"),  # consistent, but below the margin
        ([0.10, -0.02, 0.05], "inconclusive"),  # the interval spans 0
        ([-0.1, -0.2, -0.15], "does not hold"),
    ],
)
def test_claims_table_verdict_weighs_the_interval_and_the_margin(diffs, verdict):
    table = E.claims_table(_claim_df(diffs), claims=E.CLAIMS[:1])
    assert table.verdict.tolist() == [verdict]
    assert table["seeds won"][0] == f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
    assert table.difference[0] == pytest.approx(sum(diffs) / len(diffs), abs=5e-4)  # rounded
    with pytest.raises(ValueError, match="no cells for"):
        E.claims_table(_claim_df(diffs), claims=E.CLAIMS[2:3])


def test_verdict_interval_is_students_t_and_as_good_claims_allow_the_margin():
    # three seeds: mean 0.02, sample std 0.01, t(0.975, 2) = 4.303 -> half-width 0.02484
    mean, low, high, word = E.verdict([0.01, 0.02, 0.03])
    assert mean == pytest.approx(0.02) and high - mean == pytest.approx(0.024843, abs=1e-5)
    assert low == pytest.approx(2 * mean - high) and word == "inconclusive"
    # non-inferiority: trailing by less than the margin on every seed holds
    assert E.verdict([-0.004, -0.005, -0.006], 0.01, "as good")[3] == "holds"
    assert E.verdict([-0.04, -0.05, -0.06], 0.01, "as good")[3] == "does not hold"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        E.verdict([0.1])
    with pytest.raises(ValueError, match="kind='maybe'"):
        E.Claim("p", "c", {}, "fedavg", "local", kind="maybe")


def test_claim_cells_cover_every_claim_once():
    cells = E.claim_cells()
    assert len(cells) == len(set((m, tuple(sorted(s.items()))) for m, s in cells))
    for c in E.CLAIMS:
        assert (c.method, c.setting) in cells and (c.baseline, c.setting) in cells
        assert c.method in fm.recipes.METHODS and c.baseline in fm.recipes.METHODS


def test_ranking_and_summary():
    means = (("a", 0.5), ("b", 0.7), ("c", 0.6))
    rows = [{"method": m, "seed": s, **fm.knobs.BASE, "accuracy": a + 0.01 * s}
            for m, a in means for s in range(3)]  # fmt: skip
    df = pd.DataFrame(rows)
    assert E.ranking(df).loc["base"].to_dict() == {"a": 3, "b": 1, "c": 2}
    moved = df.assign(alpha=0.1, labeled_fraction=0.3)
    assert E.setting_label(moved).iloc[0] == "alpha 0.1, labeled_fraction 0.3"
    summ = E.summary(df).set_index("method")
    assert summ.loc["b", "mean"] == pytest.approx(0.71) and summ.loc["b", "count"] == 3
    with pytest.raises(ValueError, match="metric='acc'"):
        E.summary(df, "acc")


def test_cli_runs_a_tiny_grid_end_to_end(tmp_path, capsys):
    args = ["grid", "--methods", "fedavg,local", "--alpha", "0.3,1", "--seeds", "1",
            "--out", str(tmp_path), "--samples", "600", "--clients", "4", "--rounds", "1",
            "--quiet"]  # fmt: skip
    assert E.main(args) == 0
    df = pd.read_csv(tmp_path / "grid.csv")
    assert len(df) == 4 and set(df.method) == {"fedavg", "local"}
    for name in ("summary.csv", "ranking.csv", "grid.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "wrote 4 cells" in capsys.readouterr().out
    assert E.main(args) == 0  # cached: the second run trains nothing
    assert pd.read_csv(tmp_path / "grid.csv").cached.all()
    assert E.main(["grid", "--methods", "fedavg,nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        E.main(["grid", "--alpha", "one,two"])


def test_cli_help_names_every_method(capsys):
    with pytest.raises(SystemExit):
        E.main(["grid", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in fm.recipes.METHODS) and "--alpha" in text


def test_each_method_builds_its_papers_recipe_not_a_fedavg_fallback():
    from fedlab_mm.federated import FedAvg, FedProx, LocalOnly

    clients, server = fm.recipes._clients(fm.knobs.check_setting({"missing_rate": 0.5}), 0, TINY)
    expect = {  # method -> (strategy class, init rule class, a loss class it must use)
        "fedavg": (FedAvg, "Overwrite", None), "fedprox": (FedProx, "Overwrite", None),
        "local": (LocalOnly, "Overwrite", None), "ala": (FedAvg, "ALA", None),
        "fedepa": (FedAvg, "ALA", "Independence"), "cka": (fm.cka_graph.CKAGraph, None, None),
        "fedmvp": (fm.cka_graph.CKAGraph, None, fm.mcm_ram.MCM), "fedalign": ("FedAlign", None,
        "Orthogonality"), "rela": ("RELA", None, None), "sized_local": (LocalOnly, None, None),
    }  # fmt: skip
    for name, (strategy, init, loss) in expect.items():
        views, recipe, _ = fm.recipes.METHODS[name].build(clients, server, TINY)
        got = type(recipe.strategy)
        assert got.__name__ == strategy if isinstance(strategy, str) else got is strategy, name
        if init is not None:
            assert type(recipe.trainer.init).__name__ == init, name
        names = [type(t).__name__ for t in recipe.trainer.losses]
        if loss is not None:
            assert (loss if isinstance(loss, str) else loss.__name__) in names, (name, names)
    filled = {}  # completion fills every gap of every client, each method its own way
    for name in ("zero_fill", "knn_fill", "frozen_fill"):
        views, _, _ = fm.recipes.METHODS[name].build(clients, server, TINY)
        assert all((v.train.present | v.train.filled).all() and v.train.filled.any() for v in views)
        first = views[0].train
        filled[name] = torch.cat([first.modalities[m].flatten(1) for m in first.names], 1)
    assert not torch.equal(filled["zero_fill"], filled["knn_fill"])
    assert not torch.equal(filled["knn_fill"], filled["frozen_fill"])


def test_the_cka_probe_is_server_made_public_digits_by_default():
    assert Scale().probe_source == "public"
    clients, server = fm.recipes._clients(fm.knobs.check_setting({}), 0, TINY)
    assert "sklearn_index" in server.probe.meta and "mnist_index" not in server.probe.meta
    assert set(server.probe.modalities) == {"image", "text"} and len(server.probe) == TINY.probe
    held = Scale(**{**TINY.__dict__, "probe_source": "held_out"})
    _, privileged = fm.recipes._clients(fm.knobs.check_setting({}), 0, held)
    assert "mnist_index" in privileged.probe.meta  # a split of the clients' own MNIST digits
    assert torch.equal(server.test.y, privileged.test.y)  # the same test set either way
    assert fm.recipes.cell_key("cka", {}, 0, TINY) != fm.recipes.cell_key("cka", {}, 0, held)
    with pytest.raises(ValueError, match="probe_source='server'.*public.*held_out"):
        Scale(probe_source="server")


def test_expect_checks_a_claim_and_names_it_when_it_fails(monkeypatch, capsys):
    import fedlab_mm as fm

    monkeypatch.setenv("FEDLAB_MM_SMOKE", "0")
    assert fm.expect("one is less than two", 1 < 2) is None
    assert "checked: one is less than two" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="ALA beats FedAvg"):
        fm.expect("ALA beats FedAvg", np.float64(0.7) > 0.8)
    with pytest.raises(ValueError, match="holds"):
        fm.expect("a number is not a verdict", 0.3)
    with pytest.raises(ValueError, match="statement"):
        fm.expect("", True)


def test_expect_skips_full_size_claims_in_smoke_mode(monkeypatch, capsys):
    import fedlab_mm as fm

    monkeypatch.setenv("FEDLAB_MM_SMOKE", "1")
    fm.expect("needs the full sizes", False)
    assert "not checked in smoke mode" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        fm.expect("holds at any size", False, smoke=True)


def test_history_last_is_the_mean_of_the_last_rounds():
    from fedlab_mm.federated import History

    h = History([(r, -1, "server_test", "accuracy", v) for r, v in ((1, 0.2), (2, 0.4), (3, 0.9))])
    assert h.last(rounds=2) == pytest.approx(0.65)
    assert h.last(rounds=5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="rounds"):
        h.last(rounds=0)


def test_a_cell_records_the_mean_over_its_last_rounds():
    scale = Scale(**{**TINY.__dict__, "rounds": 3, "last": 2})
    setting = {"alpha": 0.5}
    row = fm.recipes.run_cell("fedavg", setting, seed=0, scale=scale)
    clients, server = fm.recipes._clients(fm.knobs.check_setting(setting), 0, scale)
    clients, recipe, test = fm.recipes.METHODS["fedavg"].build(clients, server, scale)
    h = fm.federated.simulate(clients, *recipe, rounds=3, seed=0, global_test=test, progress=False)
    per_round = h.curve(split="personal")
    assert row["accuracy"] == pytest.approx(per_round.iloc[-2:].mean(), abs=1e-9)
    assert row["accuracy"] != pytest.approx(per_round.iloc[-1], abs=1e-6)  # not the final round
    assert row["server_accuracy"] == pytest.approx(h.curve().iloc[-2:].mean(), abs=1e-9)
    with pytest.raises(ValueError, match="last"):
        Scale(last=0)
