"""Plots of method x heterogeneity grids (:mod:`fedlab_mm.experiments`)."""

from __future__ import annotations

import numpy as np

from ..knobs import BASE, KNOB_AXES, KNOBS
from .common import PALETTE, _plt


#: How each knob reads on an axis, and whether its axis is logarithmic.
def _row_labels(df) -> dict:
    """Method name -> label, from the rows' ``label`` column when the grid wrote one."""
    if "label" not in df:
        return {}
    return dict(zip(df["method"], df["label"]))


def grid_curves(df, metric: str = "accuracy", labels: dict | None = None, ylabel: str = ""):
    """``metric`` against each heterogeneity knob the grid varied, one line per method:
    the mean over seeds with a band of ± one standard deviation.

    Parameters
    ----------
    df : pandas.DataFrame
        :func:`fedlab_mm.experiments.grid`'s rows.
    metric : str
        A numeric column, e.g. ``"accuracy"`` or ``"server_accuracy"``.
    labels : dict, optional
        Method name -> legend label (default: the rows' ``label`` column, which
        :func:`fedlab_mm.experiments.grid` writes, or the method's name).
    """
    if metric not in df:
        raise ValueError(f"metric={metric!r} is not a column; columns: {list(df.columns)}")
    knobs = [k for k in KNOBS if df[k].nunique() > 1] or ["alpha"]
    plt = _plt()
    ncols = 2 if len(knobs) == 4 else len(knobs)  # four panels read better as 2 x 2
    nrows = -(-len(knobs) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols + 1.8, 3.4 * nrows), squeeze=False, sharey=True
    )
    methods = list(dict.fromkeys(df["method"]))
    labels = {**_row_labels(df), **(labels or {})}
    for ax, knob in zip(axes.flat, knobs):
        others = [k for k in KNOBS if k != knob]
        at_base = np.logical_and.reduce([np.isclose(df[k], BASE[k]) for k in others])
        rows = df[at_base]
        for j, method in enumerate(methods):
            stats = rows[rows.method == method].groupby(knob)[metric].agg(["mean", "std"])
            stats = stats.dropna(subset=["mean"])
            if stats.empty:
                continue
            colour = PALETTE[j % len(PALETTE)]
            x, mean, std = stats.index.values, stats["mean"].values, stats["std"].fillna(0).values
            ax.plot(x, mean, marker="o", color=colour, label=labels.get(method, method))
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
        xlabel, log = KNOB_AXES[knob]
        values = sorted(rows[knob].unique())
        if log and min(values) > 0:
            ax.set_xscale("log")
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.axvline(BASE[knob], color="#999999", linestyle="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_title(f"varying {knob}", fontsize=10)
        ax.grid(alpha=0.3)
    seeds = df.groupby(["method", *KNOBS]).size()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    for row in axes:
        row[0].set_ylabel(ylabel or f"{metric.replace('_', ' ')}\n(mean ± std, {n} seeds)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    for ax in axes.flat[len(knobs) :]:
        ax.set_visible(False)
    if len(knobs) > 1:
        fig.suptitle("dashed line: the base value the other panels hold fixed", fontsize=9)
    fig.tight_layout()
    return fig


def method_bars(df, metrics: dict, labels: dict | None = None, title: str = ""):
    """Horizontal bars, one group per method (in the order of ``df``), one bar per metric:
    the mean over seeds with ± one standard deviation as an error bar.

    Parameters
    ----------
    df : pandas.DataFrame
        Grid rows for one setting (:func:`fedlab_mm.experiments.grid`).
    metrics : dict
        Column -> legend label, e.g. ``{"served_accuracy": "served", "accuracy": "trained"}``.
    labels : dict, optional
        Method name -> axis label (default: the rows' ``label`` column, or the method's name).
    """
    methods = list(dict.fromkeys(df["method"]))
    labels = {**_row_labels(df), **(labels or {})}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.6 * len(methods)))
    width = 0.8 / len(metrics)
    lowest = 1.0
    for j, (metric, name) in enumerate(metrics.items()):
        stats = df.groupby("method", sort=False)[metric].agg(["mean", "std", "count"])
        stats = stats.loc[methods]
        offset = (j - (len(metrics) - 1) / 2) * width  # bars of one method side by side
        ax.barh(np.arange(len(methods)) + offset, stats["mean"], xerr=stats["std"].fillna(0),
                height=width * 0.95, color=PALETTE[j % len(PALETTE)], label=name)  # fmt: skip
        lowest = min(lowest, float((stats["mean"] - stats["std"].fillna(0)).min()))
    seeds = int(stats["count"].max())
    ax.set_yticks(range(len(methods)), [labels.get(m, m) for m in methods])
    ax.invert_yaxis()  # the first method on top
    ax.set_xlim(max(0.0, np.floor(lowest * 10 - 0.5) / 10), 1.0)
    ax.set_xlabel(f"accuracy on the clients' own test data (mean ± std, {seeds} seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(metrics))
    fig.tight_layout()
    return fig
