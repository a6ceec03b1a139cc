"""Plots of federated runs: learning curves, sweeps, learned personalisation weights, the
server's client similarity graph and layer-by-layer CKA."""

from __future__ import annotations

import numpy as np

from .common import PALETTE, _plt, draw_curves


def curves(
    histories: dict,
    metric: str = "accuracy",
    split: str = "server_test",
    ax=None,
    title: str = "",
    ylabel: str = "",
):
    """One learning curve per run: ``histories`` maps a label to a History."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    readable = split.replace("_", " ")
    draw_curves(
        ax,
        {label: h.curve(metric, split) for label, h in histories.items()},
        ylabel=ylabel or f"{metric} ({readable})",
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
        ax.set_xticks(list(table[x]), [f"{v:g}" for v in table[x]])  # label every point
        ax.minorticks_off()
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


def similarity_graph(graph, weights, baseline=None, names=None, flagged=(), title=""):
    """The server's client similarity graph: a CKA heatmap, a node-link drawing (edge width
    and darkness = CKA, node area = aggregation weight) and the weights as bars, next to
    FedAvg's sample-count weights when ``baseline`` is given.

    Parameters
    ----------
    graph : (N, N) CKA matrix;  weights : (N,) aggregation weights
    baseline : (N,), optional  FedAvg's weights, for comparison
    names : list of str, optional  client labels (default: their position)
    flagged : client positions to draw in a warning colour (e.g. corrupted ones)
    """
    plt = _plt()
    s = np.asarray(graph, dtype=float)
    w = np.asarray(weights, dtype=float)
    n = len(s)
    names = [str(k) for k in range(n)] if names is None else [str(k) for k in names]
    colours = [PALETTE[5] if k in set(flagged) else PALETTE[0] for k in range(n)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.1, 1, 1.2]})
    image = axes[0].imshow(s, cmap="cividis", vmin=max(0.0, float(s.min())), vmax=1.0)
    axes[0].set_xticks(range(n), names, fontsize=8)
    axes[0].set_yticks(range(n), names, fontsize=8)
    axes[0].set_xlabel("client")
    axes[0].set_ylabel("client")
    axes[0].set_title("CKA between client models", fontsize=10)
    fig.colorbar(image, ax=axes[0], shrink=0.8, label="linear CKA")
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    xy = np.c_[np.cos(angle), np.sin(angle)]
    low = float(s[~np.eye(n, dtype=bool)].min()) if n > 1 else 0.0
    for i in range(n):
        for j in range(i + 1, n):
            strength = (s[i, j] - low) / max(1.0 - low, 1e-9)
            axes[1].plot(
                *xy[[i, j]].T,
                color="#555555",
                alpha=0.15 + 0.6 * strength,
                lw=0.5 + 3 * strength,
                zorder=1,
            )
    axes[1].scatter(*xy.T, s=4000 * w, c=colours, zorder=2, edgecolors="white")
    for k in range(n):
        axes[1].annotate(names[k], xy[k] * 1.22, ha="center", va="center", fontsize=9)
    axes[1].set_xlim(-1.45, 1.45)
    axes[1].set_ylim(-1.45, 1.45)
    axes[1].set_aspect("equal")
    axes[1].axis("off")
    axes[1].set_title("graph: edge = CKA, node area = weight", fontsize=10)
    pos = np.arange(n)
    width = 0.4 if baseline is not None else 0.8
    axes[2].bar(pos - (width / 2 if baseline is not None else 0), w, width, color=colours)
    handles, labels = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[0])], ["CKA-graph weight"]
    if flagged:
        handles.append(plt.Rectangle((0, 0), 1, 1, color=PALETTE[5]))
        labels.append("CKA-graph weight, flagged client")
    top = float(w.max())
    if baseline is not None:
        base = np.asarray(baseline, dtype=float)
        axes[2].bar(pos + width / 2, base, width, color=PALETTE[8])
        handles.append(plt.Rectangle((0, 0), 1, 1, color=PALETTE[8]))
        labels.append("FedAvg weight (sample share)")
        top = max(top, float(base.max()))
    axes[2].set_xticks(pos, names, fontsize=8)
    axes[2].set_xlabel("client")
    axes[2].set_ylabel("aggregation weight")
    axes[2].set_title("weights", fontsize=10)
    axes[2].set_ylim(0, 1.45 * top)  # room for the legend above the bars
    axes[2].legend(handles, labels, fontsize=8, loc="upper center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cka_heatmap(table, title: str = "layer-by-layer CKA", xlabel="model B", ylabel="model A"):
    """A layers x layers CKA table (e.g. :func:`fedlab_mm.cka.layerwise_cka`)."""
    return similarity_heatmap(table, title, xlabel, ylabel, label="linear CKA")


def similarity_heatmap(
    table, title: str = "", xlabel: str = "", ylabel: str = "", label="similarity", vmin=0.0
):
    """Any similarity table with values in [``vmin``, 1], each cell printed; ``label`` names
    the measure on the colour bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.9 * len(table.columns) + 3, 0.7 * len(table) + 2))
    image = ax.imshow(table.values, cmap="cividis", vmin=vmin, vmax=1)
    ax.set_xticks(range(len(table.columns)), table.columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(table.index)), table.index, fontsize=8)
    for i in range(len(table.index)):
        for j in range(len(table.columns)):
            v = float(table.values[i, j])
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if v > vmin + 0.6 * (1 - vmin) else "white",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    fig.tight_layout()
    return fig
