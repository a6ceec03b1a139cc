"""Plots of partitions: label mixes per client, availability, skew metrics, feature skew."""

from __future__ import annotations

import numpy as np

from ..partition.skew import report, summary
from .common import PALETTE, _client_ticks, _labels_of, _plt
from .data import spectrogram


def client_class_bars(
    client_labels,
    num_classes: int,
    class_names=None,
    title: str = "",
    ax=None,
    percent: bool = False,
):
    """Stacked bars: how many samples of each class every client holds.

    Parameters
    ----------
    client_labels : list of 1-d int arrays/tensors, or an (N, C) count matrix
        The labels each client holds, or the counts directly.
    num_classes : int
    class_names : list of str, optional
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    percent : bool
        Normalise each bar to 100%.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    if isinstance(client_labels, np.ndarray) and client_labels.ndim == 2:
        counts = client_labels.astype(float)
    else:
        counts = np.stack(
            [
                np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)
                for y in client_labels
            ]
        ).astype(float)  # (N, C)
    if percent:
        counts = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(14.0, max(4.0, 0.25 * len(counts) + 3)), 3.4))
    bottom = np.zeros(len(counts))
    names = class_names or [str(c) for c in range(num_classes)]
    for c in range(num_classes):
        ax.bar(
            np.arange(len(counts)),
            counts[:, c],
            bottom=bottom,
            label=names[c],
            color=PALETTE[c % len(PALETTE)],
            width=0.85,
            linewidth=0,
        )
        bottom += counts[:, c]
    _client_ticks(ax, len(counts))
    ax.set_xlabel("client")
    ax.set_ylabel("share of client's samples (%)" if percent else "samples")
    ax.set_title(title or "class mix per client")
    ax.legend(title="class", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def _counts(partition, data, num_classes):
    y = _labels_of(data)
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    return partition.label_counts(y, num_classes), num_classes


def label_heatmap(
    partition,
    data,
    num_classes=None,
    class_names=None,
    percent: bool = False,
    ax=None,
    title: str = "",
):
    """Client x class heatmap of label counts (or each client's percentages)."""
    plt = _plt()
    counts, num_classes = _counts(partition, data, num_classes)
    values = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1) if percent else counts
    if ax is None:
        _, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.22 * len(counts) + 3)), 3.6))
    image = ax.imshow(values.T, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="% of client" if percent else "samples")
    ax.set_yticks(np.arange(num_classes))
    ax.set_yticklabels(class_names or [str(c) for c in range(num_classes)], fontsize=8)
    _client_ticks(ax, len(counts))
    ax.set_xlabel("client")
    ax.set_ylabel("class")
    ax.set_title(title or "label distribution: client x class")
    ax.figure.tight_layout()
    return ax.figure


def label_bubbles(partition, data, num_classes=None, class_names=None, ax=None, title: str = ""):
    """Client x class bubble plot: bubble area proportional to the count."""
    plt = _plt()
    counts, num_classes = _counts(partition, data, num_classes)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.22 * len(counts) + 3)), 3.6))
    kk, cc = np.meshgrid(np.arange(len(counts)), np.arange(num_classes), indexing="ij")
    area = 400 * counts / max(counts.max(), 1)
    ax.scatter(
        kk.ravel(),
        cc.ravel(),
        s=area.ravel(),
        c=[PALETTE[c % len(PALETTE)] for c in cc.ravel()],
        alpha=0.75,
        linewidths=0,
    )
    ax.set_yticks(np.arange(num_classes))
    ax.set_yticklabels(class_names or [str(c) for c in range(num_classes)], fontsize=8)
    _client_ticks(ax, len(counts))
    ax.set_xlabel("client")
    ax.set_ylabel("class")
    ax.set_title(title or f"samples per client and class (largest bubble = {counts.max()})")
    ax.figure.tight_layout()
    return ax.figure


def compare_partitions(
    partitions: dict, data, num_classes=None, class_names=None, percent: bool = True
):
    """Side-by-side stacked bars of several partitions, e.g. alpha = 0.05 / 0.5 / 50."""
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(partitions), figsize=(4.2 * len(partitions), 3.6), sharey=True, squeeze=False
    )
    for ax, (name, part) in zip(axes[0], partitions.items()):
        counts, num_classes = _counts(part, data, num_classes)
        js = summary(part, _labels_of(data), num_classes)["js_distance"]
        client_class_bars(
            counts,
            num_classes,
            class_names,
            ax=ax,
            percent=percent,
            title=f"{name}\nmean JS distance {js:.2f}",
        )
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="class", loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    return fig


def availability(partition, ax=None, title: str = ""):
    """Client x modality matrix: the share of each client's samples that have the modality."""
    plt = _plt()
    if partition.present is None:
        raise ValueError("the partition has no modality masks; apply missing_modalities first")
    share = np.stack([p.mean(0) if len(p) else np.zeros(p.shape[1]) for p in partition.present])
    if ax is None:
        _, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.22 * len(share) + 3)), 2.6))
    image = ax.imshow(
        share.T, aspect="auto", cmap="cividis", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.figure.colorbar(image, ax=ax, label="share present")
    if len(share) <= 30:  # few clients: print the shares, colours alone hide 0.69 vs 0.71
        for (k, j), value in np.ndenumerate(share):
            text = "1" if value >= 0.995 else "0" if value < 0.005 else f"{value:.2f}".lstrip("0")
            ax.text(
                k,
                j,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.5 else "black",
            )
    ax.set_yticks(np.arange(len(partition.modalities)))
    ax.set_yticklabels(partition.modalities)
    _client_ticks(ax, len(share))
    ax.set_xlabel("client")
    ax.set_title(title or "modality availability per client (dark = missing)")
    ax.figure.tight_layout()
    return ax.figure


def skew_metrics(partition, data, num_classes=None, title: str = ""):
    """Per-client skew: size, effective number of classes, JS distance to the global mix.

    ``data`` is the dataset (or its labels) the partition was made from.
    """
    plt = _plt()
    table = report(partition, _labels_of(data), num_classes)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    fig.suptitle(title or repr(partition), fontsize=10)
    clients = table.index.to_numpy()
    panels = [
        ("size", "samples", "client size"),
        ("effective_classes", "exp(entropy)", "effective number of classes"),
        ("js_distance", "JS distance", "distance to the global label mix"),
    ]
    for ax, (col, ylabel, title) in zip(axes, panels):
        ax.bar(clients, table[col], color=PALETTE[0], width=0.85, linewidth=0)
        ax.set_xlabel("client")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        _client_ticks(ax, len(clients))
    axes[2].set_ylim(0, 1)
    fig.tight_layout()
    return fig


def client_samples(partition, dataset, modality: str = "image", per_client: int = 4, clients=None):
    """A few samples of one image-like modality from each client, after the client's
    feature transforms and masks (a missing modality shows as a blank tile)."""
    plt = _plt()
    clients = range(partition.num_clients) if clients is None else list(clients)
    clients = list(clients)
    fig, axes = plt.subplots(
        len(clients),
        per_client,
        figsize=(1.1 * per_client + 0.8, 1.1 * len(clients)),
        squeeze=False,
    )
    for row, k in zip(axes, clients):
        local = partition.client_dataset(dataset, k)
        x = local.modalities[modality]
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(local):
                continue
            if modality == "image":
                ax.imshow(x[j].squeeze(0).numpy(), cmap="gray_r", vmin=0, vmax=1)
            else:
                spectrogram(ax, x[j])
                ax.set_xlabel("")
                ax.set_ylabel("")
                ax.set_xticks([])
                ax.set_yticks([])
        applied = [
            f"{kind} {value:g}"
            for name, kind, value in (partition.transforms or [[]] * partition.num_clients)[k]
            if name == modality
        ]
        label = f"client {k}" + ("\n" + ", ".join(applied) if applied else "")
        row[0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(f"{modality}: what each client sees")
    fig.tight_layout()
    return fig
