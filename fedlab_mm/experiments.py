"""Method x heterogeneity grids with error bars, the papers' claims side by side, and the
``fedlab-mm`` command.

:func:`grid` runs every (method, setting, seed) cell of :mod:`fedlab_mm.methods`, caches
each finished cell as a JSON file (a re-run skips it), shows a progress bar and can use
several processes. :func:`summary` and :func:`ranking` condense the tidy rows,
:func:`fedlab_mm.viz.grid_curves` plots accuracy against each knob, :data:`CLAIMS` and
:func:`claims_table` set each paper's headline claim against what the grid measures, and
:func:`main` is the console command (``fedlab-mm grid --help``).

Examples
--------
>>> df = grid(["fedavg", "local"], {"alpha": [0.1, 1.0]}, seeds=2)   # doctest: +SKIP
>>> ranking(df)                                                       # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import config
from .methods import (
    BASE,
    KNOBS,
    METHODS,
    PROBE_SOURCES,
    Scale,
    _check_setting,
    cell_key,
    run_cell,
)

__all__ = [
    "BASE",
    "CLAIMS",
    "KNOBS",
    "METHODS",
    "CLAIM_KINDS",
    "Claim",
    "Scale",
    "claim_cells",
    "claims_table",
    "expect",
    "grid",
    "main",
    "ranking",
    "run_cell",
    "run_claims",
    "settings_from",
    "setting_label",
    "summary",
    "verdict",
]


# ----------------------------------------------------------------- grids
def settings_from(knobs: dict) -> list[dict]:
    """One-knob-at-a-time settings: the base setting, then each knob's values with the others
    at :data:`BASE`. ``{"alpha": [0.1, 10]}`` gives ``[{}, {"alpha": 0.1}, {"alpha": 10}]``
    (the base setting is included once, so every curve passes through it)."""
    out = [{}]
    for knob, values in knobs.items():
        if knob not in KNOBS:
            raise ValueError(f"unknown setting {knob!r}; the knobs are {list(KNOBS)}")
        for v in np.atleast_1d(values).tolist():
            if v != BASE[knob]:
                out.append({knob: v})
    return out


def _worker_init() -> None:
    torch.set_num_threads(1)


def grid(
    methods,
    settings,
    seeds=3,
    scale: Scale | None = None,
    cache: str | Path | None = None,
    processes: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every (method, setting, seed) cell; return one tidy row per cell.

    Parameters
    ----------
    methods : list of str
        Names from :data:`METHODS`.
    settings : dict or list of dict
        A dict ``knob -> values`` sweeps one knob at a time (:func:`settings_from`); a list
        gives the settings directly (each a dict of knobs; missing knobs take :data:`BASE`).
    seeds : int or list of int
        ``3`` means seeds 0, 1, 2.
    scale : Scale, optional
        Default :meth:`Scale.default`.
    cache : path, optional
        Folder of finished cells (one JSON file each); a re-run reads them instead of
        training again. Default: ``grid/`` in :func:`fedlab_mm.config.cache_dir`; ``False``
        turns caching off. A cell's file name hashes its method, setting, seed, scale and
        :data:`fedlab_mm.methods.CACHE_VERSION`, not the code: after editing a recipe,
        empty the folder (or bump the version) so old results are not reused.
    processes : int
        Run cells in this many worker processes (each with one torch thread). The workers
        are spawned, so a script that passes ``processes > 1`` needs the usual
        ``if __name__ == "__main__":`` guard (notebooks and ``fedlab-mm`` do not).
    progress : bool
        A progress bar over the cells.

    Returns
    -------
    pandas.DataFrame
        Columns: method, seed, the knobs, accuracy, served_accuracy, server_accuracy,
        uplink_kb, seconds (see :func:`fedlab_mm.methods.run_cell`), and cached (whether the
        row came from the cache).
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={unknown or methods!r}: valid methods are {list(METHODS)}")
    if isinstance(settings, dict):
        settings = settings_from(settings)
    settings = [_check_setting(s) for s in settings]
    if not settings:
        raise ValueError("settings is empty: give at least one setting")
    seeds = _seeds(seeds)
    scale = scale or Scale.default()
    cells = [(m, s, k, scale) for s in settings for m in methods for k in seeds]
    return _run(cells, cache, processes, progress)


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds} must be >= 1 (or a list of seeds)")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds=[] is empty: give a number of seeds or a list of seeds")
    return seeds


def _run(cells: list, cache, processes: int, progress: bool) -> pd.DataFrame:
    """Run ``(method, setting, seed, scale)`` cells, reading and writing the cache."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes={processes!r} must be an integer >= 1")
    folder = None
    if cache is not False:
        folder = Path(cache) if cache is not None else config.cache_dir() / "grid"
        folder.mkdir(parents=True, exist_ok=True)
    rows: dict[int, dict] = {}
    todo = []
    for i, (m, s, k, sc) in enumerate(cells):
        path = folder / f"{cell_key(m, s, k, sc)}.json" if folder else None
        if path is not None and path.exists():
            rows[i] = {**json.loads(path.read_text()), "cached": True}
        else:
            todo.append((i, path))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(cells), initial=len(rows), desc="grid", disable=not progress)

    def done(i, path, record):
        if path is not None:
            path.write_text(json.dumps(record))
        rows[i] = {**record, "cached": False}
        bar.set_postfix_str(f"{record['method']} {record['accuracy']:.3f}")
        bar.update()

    if processes == 1 or len(todo) <= 1:
        for i, path in todo:
            done(i, path, run_cell(*cells[i]))
    else:  # spawned workers: safe with torch's threads; scripts need the __main__ guard
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(run_cell, *cells[i]): (i, path) for i, path in todo}
            for future in as_completed(futures):
                done(*futures[future], future.result())
    bar.close()
    return pd.DataFrame([rows[i] for i in range(len(cells))])


def setting_label(df: pd.DataFrame) -> pd.Series:
    """Each row's setting in words: the knobs it moves away from :data:`BASE`, e.g.
    ``"alpha 0.1, labeled_fraction 0.1"``, or ``"base"`` when it moves none."""

    rows = df[list(KNOBS)].to_dict("records")
    return pd.Series([_label(r) for r in rows], index=df.index, dtype=str)


def _label(setting: dict) -> str:
    moved = [f"{k} {v:g}" for k, v in setting.items() if not math.isclose(v, BASE[k])]
    return ", ".join(moved) or "base"


def ranking(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Methods ranked per setting by mean ``metric`` over seeds (1 = best; ties share a rank).

    One row per setting (:func:`setting_label`), one column per method. Ranks read the means
    only: two methods whose seed-to-seed bands overlap may swap places in another run; see
    :func:`summary` for the spreads.
    """
    table = summary(df, metric)
    table["setting"] = setting_label(table)
    means = table.pivot_table(index="setting", columns="method", values="mean", sort=False)
    return means.rank(axis=1, ascending=False, method="min").astype(int)


def summary(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean, standard deviation and number of seeds of ``metric`` per method and setting."""
    if metric not in df:
        raise ValueError(f"metric={metric!r} is not a column; columns: {list(df.columns)}")
    out = df.groupby(["method", *KNOBS], sort=False)[metric].agg(["mean", "std", "count"])
    return out.reset_index()


# ----------------------------------------------------------------- the papers' claims
@dataclasses.dataclass(frozen=True)
class Claim:
    """A paper's headline claim as a comparison the grid can measure: ``method`` against
    ``baseline`` on ``setting``, by ``metric`` (higher is better).

    ``margin`` is the practical margin, fixed before looking at any result: a gain smaller than
    it does not count (default 0.01, one point of accuracy). ``kind`` is ``"better"`` for "beats"
    claims and ``"as good"`` for "as well as" claims (non-inferiority: the method may trail by
    less than ``margin``). :func:`claims_table` turns both into a verdict.
    """

    paper: str
    claim: str
    setting: dict
    method: str
    baseline: str
    metric: str = "accuracy"
    margin: float = 0.01
    kind: str = "better"

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"kind={self.kind!r} must be one of {CLAIM_KINDS}")
        if not (isinstance(self.margin, (int, float)) and 0 <= self.margin < 1):
            raise ValueError(f"margin={self.margin!r} must be a number in [0, 1)")


#: The two kinds of claim: superiority and non-inferiority.
CLAIM_KINDS = ("better", "as good")


#: One echo per paper (claims as MECHANISMS.md states them; settings chosen to echo them).
CLAIMS = (
    Claim(
        "FedEPA",
        "beats FL baselines under limited labels (and non-IID data)",
        {"alpha": 0.1, "labeled_fraction": 0.1},
        "fedepa",
        "fedavg",
    ),
    Claim(
        "FedEPA (ALA)",
        "learned mixing of the global model beats plain FedAvg under label skew",
        {"alpha": 0.1},
        "ala",
        "fedavg",
        "served_accuracy",
    ),
    Claim(
        "FedEPA (ALA), after training",
        "the same, measured after each client's local epochs",
        {"alpha": 0.1},
        "ala",
        "fedavg",
    ),
    Claim(
        "FedMVP",
        "frozen-model completion + MCM/RAM + CKA graph beats baselines at high missing rates",
        {"missing_rate": 0.8},
        "fedmvp",
        "zero_fill",
    ),
    Claim(
        "FedMVP, beyond completion",
        "MCM/RAM and the CKA server add to frozen-model completion",
        {"missing_rate": 0.8},
        "fedmvp",
        "frozen_fill",
    ),
    Claim(
        "FedMVP (CKA graph)",
        "CKA-weighted aggregation is robust when some clients are broken",
        {"corrupted_fraction": 0.3},
        "cka",
        "fedavg",
        "server_accuracy",
    ),
    Claim(
        "FedAlign, reduced (no server text tuning)",
        "clients sending only LoRA adapters and prototypes learn as well as clients sending "
        "every weight (the served models, notebook 07's metric and skew)",
        {"alpha": 0.5},
        "fedalign",
        "full_fedavg",
        "served_accuracy",
        kind="as good",
    ),
    Claim(
        "FedMosaic",
        "RELA + shared P/Q beats local training (mean over three model sizes; one task for "
        "every client here, so relevance has nothing to tell apart: notebook 08 has tasks)",
        {},
        "rela",
        "sized_local",
    ),
)


def claim_cells(claims=CLAIMS) -> list[tuple[str, dict]]:
    """The (method, setting) pairs the claims need, without repeats."""
    out = []
    for c in claims:
        for m in (c.method, c.baseline):
            if (m, c.setting) not in out:
                out.append((m, c.setting))
    return out


def run_claims(
    claims=CLAIMS, seeds=3, scale=None, cache=None, processes: int = 1, progress: bool = True
) -> pd.DataFrame:
    """Run the cells ``claims`` need (:func:`claim_cells`) like :func:`grid` does: cached,
    with a progress bar, optionally in several processes; returns the tidy rows."""
    scale = scale or Scale.default()
    cells = [
        (m, _check_setting(s), k, scale) for m, s in claim_cells(claims) for k in _seeds(seeds)
    ]
    return _run(cells, cache, processes, progress)


def expect(statement: str, holds, *, smoke: bool = False) -> None:
    """Check a claim the notebook's prose makes against the numbers a cell just printed.

    Put it in the cell that prints the numbers, with the sentence the markdown below will
    say. A full run that contradicts the sentence then stops with an ``AssertionError``
    naming it, instead of leaving prose that its own table contradicts.

    Parameters
    ----------
    statement : str
        The claim, in the words of the prose (e.g. ``"ALA is level with FedAvg + its local
        epoch"``).
    holds : bool
        Whether the printed numbers support it (a Python or NumPy bool).
    smoke : bool
        Also check it in smoke mode. Most claims need the full sizes (smoke runs train for
        two rounds on a few hundred samples), so by default a smoke run prints the claim
        as not checked; set ``smoke=True`` for claims that hold at any size.

    It returns nothing (so a notebook cell that ends with it shows only its line), prints
    ``checked: ...`` or ``not checked in smoke mode: ...``, and raises when the claim fails.

    Examples
    --------
    >>> expect("two is more than one", 2 > 1, smoke=True)
    checked: two is more than one
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement={statement!r} must be the claim's text, a non-empty str")
    if not isinstance(holds, (bool, np.bool_)):
        raise ValueError(
            f"holds={holds!r} must be a bool (the comparison itself), not {type(holds).__name__}"
        )
    if config.smoke() and not smoke:
        print(f"not checked in smoke mode: {statement}")
        return
    if not holds:
        raise AssertionError(f"the notebook claims '{statement}', but its numbers say otherwise")
    print(f"checked: {statement}")


def verdict(diff, margin: float = 0.01, kind: str = "better", level: float = 0.95):
    """The mean of the per-seed differences ``diff``, its confidence interval over seeds
    (Student's t, ``level``) and the verdict for a claim of ``kind`` with practical ``margin``:

    - ``"better"``: *holds* when the interval lies above 0 and the mean reaches ``margin``;
      *does not hold* when the whole interval lies below ``margin`` (any gain is too small to
      matter, or it is a loss);
    - ``"as good"``: *holds* when the interval lies above ``-margin``; *does not hold* when it
      lies below ``-margin``;
    - *inconclusive* otherwise: the seeds disagree too much to say (3 seeds give wide
      intervals: t = 4.30 at 95%).

    Returns ``(mean, low, high, verdict)``.
    """
    from scipy import stats

    diff = np.asarray(diff, dtype=float)
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2:
        raise ValueError(f"a verdict needs at least 2 seeds with both methods, got {len(diff)}")
    mean = float(diff.mean())
    half = float(stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / len(diff) ** 0.5)
    low, high = mean - half, mean + half
    if kind == "better":
        word = (
            "holds"
            if low > 0 and mean >= margin
            else "does not hold"
            if high < margin
            else "inconclusive"
        )
    else:
        word = "holds" if low > -margin else "does not hold" if high < -margin else "inconclusive"
    return mean, low, high, word


def claims_table(df: pd.DataFrame, claims=CLAIMS) -> pd.DataFrame:
    """Each claim with both methods' mean ± std over seeds, the mean per-seed difference with
    its 95% confidence interval, the seeds the method won, the uplink per client and round,
    and the :func:`verdict` for the claim's kind and practical margin."""
    rows = []
    for c in claims:
        full = _check_setting(c.setting)
        at = np.logical_and.reduce([np.isclose(df[k], full[k]) for k in KNOBS])
        cells = df[at].set_index(["method", "seed"])
        if not {c.method, c.baseline} <= set(cells.index.get_level_values("method")):
            raise ValueError(f"df has no cells for {c.method!r} and {c.baseline!r} at {c.setting}")
        a, b = cells[c.metric].loc[c.method], cells[c.metric].loc[c.baseline]
        up = cells["uplink_kb"]
        diff = (a - b).dropna()
        mean, low, high, word = verdict(diff, c.margin, c.kind)
        rows.append(
            {
                "paper": c.paper,
                "claim": c.claim,
                "setting": _label(c.setting),
                "metric": c.metric,
                "method": METHODS[c.method].label,
                "method score": f"{a.mean():.3f} ± {a.std():.3f}",
                "baseline": METHODS[c.baseline].label,
                "baseline score": f"{b.mean():.3f} ± {b.std():.3f}",
                "difference": round(mean, 3),
                "95% interval": f"{low:+.3f} to {high:+.3f}",
                "needs": ("> " if c.kind == "better" else "> -") + f"{c.margin:g}",
                "seeds won": f"{int((diff > 0).sum())}/{len(diff)}",
                "uplink kB": f"{up.loc[c.method].mean():.0f} vs {up.loc[c.baseline].mean():.0f}",
                "verdict": word,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- command line
def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"{text!r} is not a comma-separated list of numbers"
        raise argparse.ArgumentTypeError(msg) from None


def _parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {m.name:12s} {m.label} (notebook {m.notebook})" for m in METHODS.values())
    p = argparse.ArgumentParser(
        prog="fedlab-mm",
        description="fedlab_mm from the command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "grid",
        help="run a method x heterogeneity grid and save CSV + PNG",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run every method on every setting with several seeds, one knob at a time:\n"
            "each knob's values are run with the other knobs at their base values\n"
            f"{BASE}.\nFinished cells are cached in OUT/cells, so a re-run skips them.\n\n"
            f"methods:\n{lines}"
        ),
        epilog=(
            "example:\n  fedlab-mm grid --methods fedavg,fedepa --alpha 0.1,1 --seeds 3 "
            "--out results/\n\nwrites OUT/grid.csv (one row per cell), OUT/summary.csv "
            "(mean and std),\nOUT/ranking.csv and OUT/grid.png (accuracy against each knob)."
        ),
    )
    g.add_argument("--methods", default="fedavg,local,fedepa", help="comma-separated names")
    for knob in KNOBS:
        flag = "--" + knob.replace("_", "-")
        g.add_argument(flag, type=_floats, default=[], metavar="V1,V2", help=f"values of {knob}")
    g.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    g.add_argument("--out", default="results", help="output folder (default results/)")
    g.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    g.add_argument("--rounds", type=int, default=Scale.rounds, help="rounds per run")
    g.add_argument("--clients", type=int, default=Scale.num_clients, help="clients per run")
    g.add_argument("--samples", type=int, default=Scale.n_samples, help="digits used (<= 5000)")
    g.add_argument(
        "--probe",
        choices=PROBE_SOURCES,
        default=Scale.probe_source,
        help="the CKA server's probe: public digits it captions itself (default) or a "
        "held-out split of the clients' distribution",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    """The ``fedlab-mm`` console command (``fedlab-mm grid --help``)."""
    args = _parser().parse_args(argv)
    config.offline()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k)}
    try:
        scale = Scale(
            n_samples=args.samples,
            num_clients=args.clients,
            rounds=args.rounds,
            probe_source=args.probe,
        )
        out = Path(args.out)
        df = grid(
            methods,
            knobs,
            seeds=args.seeds,
            scale=scale,
            cache=out / "cells",
            processes=args.processes,
            progress=not args.quiet,
        )
    except ValueError as err:
        print(f"fedlab-mm grid: error: {err}", file=sys.stderr)
        return 2
    df.to_csv(out / "grid.csv", index=False)
    summary(df).to_csv(out / "summary.csv", index=False)
    ranks = ranking(df)
    ranks.to_csv(out / "ranking.csv")
    from .viz import grid_curves

    fig = grid_curves(df)
    fig.savefig(out / "grid.png", dpi=120, bbox_inches="tight")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(ranks)
    print(f"wrote {len(df)} cells to {out}/grid.csv, summary.csv, ranking.csv, grid.png")
    return 0
