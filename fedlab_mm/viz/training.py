"""Plots of federated runs: learning curves, sweeps, learned personalisation weights."""

from __future__ import annotations

import numpy as np

from .common import PALETTE, _plt, draw_curves


def curves(
    histories: dict, metric: str = "accuracy", split: str = "server_test", ax=None, title: str = ""
):
    """One learning curve per run: ``histories`` maps a label to a History."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    readable = split.replace("_", " ")
    draw_curves(
        ax,
        {label: h.curve(metric, split) for label, h in histories.items()},
        ylabel=f"{metric} ({readable})",
        title=title or f"{readable} {metric} per round",
    )
    ax.figure.tight_layout()
    return ax.figure


def sweep_plot(
    table,
    x: str,
    columns: dict,
    highlight=None,
    logx: bool = True,
    ax=None,
    title: str = "",
    ylabel: str = "accuracy",
):
    """Lines of several columns of a results table against ``x``, one ``x`` highlighted.

    ``columns`` maps a column of ``table`` to its legend label; at the highlighted ``x`` a
    dashed line marks the position and the legend gives each column's value there.
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    row = table[table[x] == highlight] if highlight is not None else table.iloc[:0]
    for j, (column, label) in enumerate(columns.items()):
        if len(row):  # the highlighted value goes into the legend, where labels cannot collide
            label = f"{label}: {float(row[column].iloc[0]):.2f}"
        ax.plot(table[x], table[column], marker="o", color=PALETTE[j % len(PALETTE)], label=label)
    if highlight is not None:
        ax.axvline(highlight, color="#999999", linestyle="--", lw=1)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, title=f"at {x} = {highlight}" if len(row) else None, title_fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def mixing_weights(weights, skew=None, skew_label: str = "JS distance to the global label mix"):
    """Learned personalisation weights: a client x tensor heatmap of mean ``W`` and, when a
    per-client ``skew`` is given, mean ``W`` against it.

    Parameters
    ----------
    weights : pandas.DataFrame
        One row per client, one column per mixed tensor, values = mean W in [0, 1].
    skew : pandas.Series, optional
        One value per client (same index).
    """
    plt = _plt()
    panels = 2 if skew is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    image = ax.imshow(
        weights.to_numpy().T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
    )
    fig.colorbar(image, ax=ax, label="mean W (1 = take the global model)")
    ax.set_yticks(np.arange(weights.shape[1]))
    ax.set_yticklabels(weights.columns, fontsize=7)
    ax.set_xticks(np.arange(len(weights)))
    ax.set_xticklabels(weights.index)
    ax.set_xlabel("client")
    ax.set_title("learned mixing weights per client and tensor")
    if skew is not None:
        ax = axes[0][1]
        mean_w = weights.mean(axis=1)
        ax.scatter(skew.loc[weights.index], mean_w, color=PALETTE[0])
        for client, x, yv in zip(weights.index, skew.loc[weights.index], mean_w):
            ax.annotate(str(client), (x, yv), textcoords="offset points", xytext=(4, 3), fontsize=8)
        ax.set_xlabel(skew_label)
        ax.set_ylabel("mean W over the mixed tensors")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("more skew, less of the global model?")
    fig.tight_layout()
    return fig
