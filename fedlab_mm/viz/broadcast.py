"""Plots for federated broadcasting: what travels, who is mixed with whom, which classes survive."""

from __future__ import annotations

import numpy as np

from .common import PALETTE, _plt


def uplink_bars(parts: dict, title: str = "what one client sends per round"):
    """Stacked horizontal bars of bytes per message part.

    ``parts`` maps a method name to ``{part name: bytes}``, e.g.
    ``{"full FedAvg": {"model": 501_000}, "FedAlign": {"adapters": 33_000, ...}}``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(parts) + 1.6))
    names = list(parts)
    colours, seen = {}, set()
    for i, name in enumerate(names):
        left = 0.0
        for part, size in parts[name].items():
            colour = colours.setdefault(part, PALETTE[len(colours) % len(PALETTE)])
            kb = size / 1e3
            ax.barh(i, kb, left=left, color=colour, label=None if part in seen else part)
            seen.add(part)
            left += kb
        ax.text(left, i, f"  {left:,.1f} KB", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("kilobytes per client and round (uplink)")
    ax.set_xlim(0, 1.25 * max(sum(p.values()) for p in parts.values()) / 1e3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncols=4)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def query_weights(weights, counts, client_ids=None, title: str = "who is mixed with whom"):
    """Left: each client's class counts; right: the ``(N, N)`` query weights (row = the
    client whose high-layer adapters are built, column = whose adapters go in)."""
    plt = _plt()
    w, n = np.asarray(weights, dtype=float), np.asarray(counts, dtype=float)
    ids = [str(k) for k in (range(len(w)) if client_ids is None else client_ids)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.25, 1]})
    share = n / np.maximum(n.sum(1, keepdims=True), 1)
    cmap = plt.get_cmap("Blues").with_extremes(bad="#d9d9d9")  # classes not held at all: grey
    shown = np.ma.masked_where(n == 0, share)
    img = axes[0].imshow(
        shown, cmap=cmap, vmin=0, vmax=max(float(share.max()), 1e-9), aspect="auto"
    )
    axes[0].set_xticks(range(n.shape[1]))
    axes[0].set_yticks(range(len(ids)), ids)
    axes[0].set_xlabel("class")
    axes[0].set_ylabel("client")
    axes[0].set_title("share of each class in the client's data (grey: none)", fontsize=10)
    fig.colorbar(img, ax=axes[0], shrink=0.8, label="share")
    img = axes[1].imshow(w, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(w)):
        for j in range(len(w)):
            if w[i, j] >= 0.05:
                colour = "white" if w[i, j] > 0.5 else "black"
                axes[1].text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                             color=colour)  # fmt: skip
    axes[1].set_xticks(range(len(ids)), ids)
    axes[1].set_yticks(range(len(ids)), ids)
    axes[1].set_xlabel("adapters from client")
    axes[1].set_ylabel("high layers built for client")
    axes[1].set_title("query weights (rows sum to 1; values < 0.05 not printed)", fontsize=10)
    fig.colorbar(img, ax=axes[1], shrink=0.8, label="weight")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_class_accuracy(table, unseen=(), chance: float | None = None, title: str = ""):
    """Grouped bars: accuracy per class (rows of ``table``) for several models (columns);
    classes in ``unseen`` are shaded, ``chance`` is drawn as a dashed line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    classes = list(table.index)
    k = len(table.columns)
    width = 0.8 / k
    for pos, cls in enumerate(classes):
        if cls in set(unseen):
            ax.axvspan(pos - 0.45, pos + 0.45, color="#eeeeee", zorder=0)
    for j, column in enumerate(table.columns):
        ax.bar(np.arange(len(classes)) + (j - (k - 1) / 2) * width, table[column], width,
               color=PALETTE[j % len(PALETTE)], label=column, zorder=2)  # fmt: skip
    if chance is not None:
        ax.axhline(chance, color="#555555", ls="--", lw=1, label=f"chance ({chance:.2f})")
    labels = [f"{c}\n(unseen)" if c in set(unseen) else str(c) for c in classes]
    ax.set_xticks(range(len(classes)), labels, fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("accuracy on the server's test set")
    ax.set_xlabel("class (grey: never in this client's data)")
    ax.legend(fontsize=8, ncols=k + 1, loc="upper center")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def rank_and_skew(table, rank, alpha, baseline="full FedAvg"):
    """Two panels from a sweep table with columns ``rank``, ``alpha``, ``method``,
    ``accuracy``, ``uplink_kb``: accuracy against uplink bytes over the ranks at ``alpha``
    (``rank`` highlighted), and accuracy against ``alpha`` at ``rank``. ``baseline`` names
    the method (or a tuple of methods) drawn as squares; every other row is FedAlign."""
    plt = _plt()
    baselines = (baseline,) if isinstance(baseline, str) else tuple(baseline)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    at = table[table.alpha == alpha]
    lora_rows = at[~at.method.isin(baselines)].sort_values("rank")
    ax = axes[0]
    ax.plot(lora_rows.uplink_kb, lora_rows.accuracy, "o-", color=PALETTE[0], label="FedAlign")
    for _, row in lora_rows.iterrows():
        ax.annotate(f"r={int(row['rank'])}", (row.uplink_kb, row.accuracy), fontsize=8,
                    textcoords="offset points", xytext=(0, 11), ha="center")  # fmt: skip
    picked = lora_rows[lora_rows["rank"] == rank]
    ax.plot(picked.uplink_kb, picked.accuracy, "o", ms=14, mfc="none", mew=1.5, color="black",
            label=f"rank {rank}: {float(picked.accuracy.iloc[0]):.3f}")  # fmt: skip
    markers = ("s", "D", "^")
    for j, name in enumerate(baselines, start=1):
        base = at[at.method == name]
        ax.plot(base.uplink_kb, base.accuracy, markers[(j - 1) % 3], color=PALETTE[j],
                label=f"{name}: {float(base.accuracy.iloc[0]):.3f}")  # fmt: skip
    ax.set_xscale("log")
    ticks = sorted(set(at.uplink_kb))
    ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("uplink per client and round (KB, log scale)")
    ax.set_ylabel("accuracy on the clients' own test data")
    ax.set_title(f"bytes against accuracy, Dirichlet alpha = {alpha:g}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    series = [("FedAlign", table[~table.method.isin(baselines) & (table["rank"] == rank)])]
    series += [(name, table[table.method == name]) for name in baselines]
    for j, (name, rows) in enumerate(series):
        rows = rows.sort_values("alpha")
        label = f"{name} (rank {rank})" if j == 0 else name
        style = "o-" if j == 0 else markers[(j - 1) % 3] + "-"
        ax.plot(rows.alpha, rows.accuracy, style, color=PALETTE[j], label=label)
    ax.axvline(alpha, color="#999999", ls="--", lw=1)
    ax.set_xscale("log")
    alphas = sorted(table.alpha.unique())
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.minorticks_off()
    ax.set_xlabel("Dirichlet alpha (small = strong label skew)")
    ax.set_ylabel("accuracy on the clients' own test data")
    ax.set_title("how label skew plays out", fontsize=10)
    ax.legend(fontsize=8)
    low = float(table.accuracy.min())
    for a in axes:
        a.set_ylim(max(0.0, low - 0.05), 1.0)
    fig.tight_layout()
    return fig
