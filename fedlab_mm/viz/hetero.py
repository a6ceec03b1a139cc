"""Plots for heterogeneous clients: who RELA thinks is relevant, how far adapters travel."""

from __future__ import annotations

import numpy as np

from .common import PALETTE, _plt


def _group_lines(ax, groups) -> None:
    """Thin lines between consecutive task groups (clients ordered by group)."""
    groups = list(groups)
    for i in range(1, len(groups)):
        if groups[i] != groups[i - 1]:
            ax.axhline(i - 0.5, color="white", lw=1.5)
            ax.axvline(i - 0.5, color="white", lw=1.5)


def relevance_maps(similarity, weights, labels, groups, title: str = ""):
    """Left: RELA's ``(N, N)`` task-vector similarity; right: the aggregation weights it gives
    (row = the client being served, column = whose adapters go in; the diagonal is 0). White
    lines separate the true task groups; ``labels`` name each client (e.g. task and size)."""
    plt = _plt()
    s, w = np.asarray(similarity, dtype=float), np.asarray(weights, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.6))
    panels = (
        (axes[0], s, "cosine similarity of task vectors", "similarity", -1, 1, "RdBu_r"),
        (axes[1], w, "RELA weights (each row sums to 1)", "weight", 0, max(w.max(), 1e-9), "Blues"),
    )
    for ax, values, name, bar, lo, hi, cmap in panels:
        image = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(name, fontsize=10)
        _group_lines(ax, groups)
        fig.colorbar(image, ax=ax, shrink=0.75, label=bar)
    axes[1].set_xlabel("whose adapters go in")
    axes[1].set_ylabel("client being served")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def recovery_vs_noise(table, title: str = "does the server still see the task groups?"):
    """Adjusted Rand index against the privacy noise's std: one faint line per seed, the mean
    bold. ``table``: a DataFrame with columns ``noise``, ``seed``, ``ARI`` and optionally
    ``setting`` (one colour per setting)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    settings = table.groupby("setting", sort=False) if "setting" in table else [("", table)]
    for j, (setting, part) in enumerate(settings):
        colour = PALETTE[j % len(PALETTE)]
        for _, g in part.groupby("seed"):
            g = g.sort_values("noise")
            ax.plot(g["noise"], g["ARI"], color=colour, alpha=0.25, lw=1)
        mean = part.groupby("noise")["ARI"].mean()
        label = f"{setting}: mean over seeds" if setting else "mean over seeds"
        ax.plot(mean.index, mean.values, color=colour, marker="o", lw=2.5, label=label)
    ax.axhline(0, color="grey", ls=":", lw=1)
    # mid-axis (x in axes fraction), clear of the legend and of the near-chance points at the end
    ax.text(0.6, 0.02, "chance", transform=ax.get_yaxis_transform(), ha="center", va="bottom",
            color="grey", fontsize=8)  # fmt: skip
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(0, table["noise"].max() * 1.1)
    ax.set_xlabel("std of the Gaussian noise added to each task vector")
    ax.set_ylabel("adjusted Rand index (1 = groups recovered)")
    ax.set_ylim(-0.2, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def accuracy_by_size(table, title: str = "personalised accuracy by model size", zoom: bool = False,
                     ax=None):  # fmt: skip
    """Grouped bars: one group per model size, one bar per method, error bars where ``table``
    has several seeds. ``table``: a DataFrame with columns ``method``, ``size``, ``accuracy``
    (and optionally ``seed``). ``zoom=True`` fits the y-axis to the bars and their error bars
    instead of starting it at zero (say so in the title). ``ax``: draw into this axes (for
    panels side by side) instead of a new figure. Returns the figure."""
    plt = _plt()
    methods = list(dict.fromkeys(table["method"]))
    sizes = list(dict.fromkeys(table["size"]))
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.5, 4))
    else:
        fig = ax.figure
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        g = table[table["method"] == method].groupby("size")["accuracy"]
        mean, std = g.mean().reindex(sizes), g.std(ddof=1).reindex(sizes)
        x = np.arange(len(sizes)) + (j - (len(methods) - 1) / 2) * width
        spread = None if std.isna().all() else std.fillna(0)  # one seed: no error bar
        ax.bar(
            x, mean, width, yerr=spread, capsize=3, color=PALETTE[j % len(PALETTE)], label=method
        )
    ax.set_xticks(range(len(sizes)), [f"{s} (width x depth)" for s in sizes])
    ax.set_ylabel("accuracy on the client's own task")
    if zoom:  # differences of a point or two; the title should say the axis is cut
        stats = table.groupby(["method", "size"])["accuracy"].agg(["mean", "std"])
        spread = stats["std"].fillna(0)
        low, high = float((stats["mean"] - spread).min()), float((stats["mean"] + spread).max())
        pad = 0.15 * max(high - low, 0.01)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    else:
        ax.set_ylim(0, 1)  # from zero: gaps of a few points should look like what they are
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    return fig
