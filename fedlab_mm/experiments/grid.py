""":func:`grid` runs every (method, setting, seed) cell of :mod:`fedlab_mm.recipes`, caches each
finished cell as a JSON file (a re-run skips it), shows a progress bar and can use several
processes; :func:`summary` and :func:`ranking` condense the tidy rows.

Examples
--------
>>> df = grid(["fedavg", "local"], {"alpha": [0.1, 1.0]}, seeds=2)   # doctest: +SKIP
>>> ranking(df)                                                       # doctest: +SKIP"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import config
from ..knobs import BASE, KNOBS, check_setting
from ..recipes import METHODS, Scale, cell_key, run_cell

__all__ = ["grid", "ranking", "run_cells", "seed_list", "setting_label", "settings_from", "summary"]


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
        :data:`fedlab_mm.recipes.CACHE_VERSION`, not the code: after editing a recipe,
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
        uplink_kb, seconds (see :func:`fedlab_mm.recipes.run_cell`), and cached (whether the
        row came from the cache).
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={unknown or methods!r}: valid methods are {list(METHODS)}")
    if isinstance(settings, dict):
        settings = settings_from(settings)
    settings = [check_setting(s) for s in settings]
    if not settings:
        raise ValueError("settings is empty: give at least one setting")
    seeds = seed_list(seeds)
    scale = scale or Scale.default()
    cells = [(m, s, k, scale) for s in settings for m in methods for k in seeds]
    return run_cells(cells, cache, processes, progress)


def seed_list(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds} must be >= 1 (or a list of seeds)")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds=[] is empty: give a number of seeds or a list of seeds")
    return seeds


def run_cells(cells: list, cache, processes: int, progress: bool) -> pd.DataFrame:
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
    df = pd.DataFrame([rows[i] for i in range(len(cells))])
    # each method's display name, so plots (fm.viz) label a grid without reading the registry
    df["label"] = [METHODS[m].label for m in df["method"]]
    return df


def setting_label(df: pd.DataFrame) -> pd.Series:
    """Each row's setting in words: the knobs it moves away from :data:`BASE`, e.g.
    ``"alpha 0.1, labeled_fraction 0.1"``, or ``"base"`` when it moves none."""

    rows = df[list(KNOBS)].to_dict("records")
    return pd.Series([describe_setting(r) for r in rows], index=df.index, dtype=str)


def describe_setting(setting: dict) -> str:
    """One setting in words: the knobs it moves away from :data:`BASE`, or ``"base"``."""
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
