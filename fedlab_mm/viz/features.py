"""Plots of learned features: recovery of known latents, 2-D projections, attention maps."""

from __future__ import annotations

import numpy as np
import torch

from .common import PALETTE, _labels_of, _plt

RECOVERY_COLUMNS = {
    "aligned~shared": "CKA(z_aligned, shared latent)",
    "context~shared": "CKA(z_context, shared latent)",
    "context~private": "CKA(z_context, private latent)",
}


def recovery_curves(table, runs=None, title: str = "what the parts learn"):
    """CKA between learned parts and the true latents over training, one panel per run.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``run``, ``round`` and those of :data:`RECOVERY_COLUMNS` (e.g. the mean over
        modalities of :func:`fedlab_mm.decomposition.recovery` after each round).
    runs : list of str, optional
        Which runs to show, in order (default: all).
    """
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    runs = list(dict.fromkeys(table["run"])) if runs is None else list(runs)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.4 * len(runs), 3.5), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, run in zip(axes, runs):
        rows = table[table["run"] == run].sort_values("round")
        for j, (column, label) in enumerate(RECOVERY_COLUMNS.items()):
            ax.plot(rows["round"], rows[column], marker="o", ms=3, color=PALETTE[j], label=label)
        ax.set_title(run, fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("linear CKA (0 = unrelated, 1 = same)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    return fig


def _pca2(x: np.ndarray) -> tuple[np.ndarray, float]:
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    explained = float((s[:2] ** 2).sum() / max((s**2).sum(), 1e-12))
    return x @ vt[:2].T, explained


def feature_projection(parts: dict, y, title: str = ""):
    """A PCA projection of each feature block to 2-D, points coloured by class.

    Parameters
    ----------
    parts : dict[str, Tensor (n, k)]
        Panel title -> features, e.g. ``{"z_aligned (image)": a, "z_context (image)": c}``.
    y : (n,) labels, or a data set
    """
    plt = _plt()
    labels = _labels_of(y)
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 4.0))
    axes = np.atleast_1d(axes)
    for ax, (name, x) in zip(axes, parts.items()):
        x = x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        xy, explained = _pca2(x)
        for c in np.unique(labels):
            rows = labels == c
            ax.scatter(
                *xy[rows].T,
                s=7,
                alpha=0.7,
                color=PALETTE[int(c) % len(PALETTE)],
                label=str(c),
                linewidths=0,
            )
        ax.set_title(f"{name}\n(PCA, {explained:.0%} of the variance)", fontsize=10)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(
        title="class", fontsize=7, markerscale=2, bbox_to_anchor=(1.02, 1), loc="upper left"
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def attention_map(
    attention, names: list[str], title: str = "who attends to whom", ax=None, vmax=None
):
    """Heatmap of one (2M, 2M) attention map over the tokens ``[a_1, c_1, ..., a_M, c_M]``.

    Parameters
    ----------
    attention : Tensor (2M, 2M) or (B, 2M, 2M)
        Rows are queries and sum to 1; a batch is averaged.
    names : list of str
        The M modality names, in token order.
    ax : matplotlib Axes, optional
        Draw into it (e.g. one panel of several); default: a new figure.
    vmax : float, optional
        Top of the colour scale (give several panels the same one); default: the maximum.
    """
    plt = _plt()
    att = attention.detach() if isinstance(attention, torch.Tensor) else torch.as_tensor(attention)
    if att.ndim == 3:
        att = att.mean(0)
    tokens = [f"{m} {part}" for m in names for part in ("aligned", "context")]
    if att.shape != (len(tokens), len(tokens)):
        raise ValueError(
            f"attention has shape {tuple(att.shape)}, expected {len(tokens)}x{len(tokens)}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.6))
    fig = ax.figure
    top = max(float(att.max()), 1e-6) if vmax is None else float(vmax)
    image = ax.imshow(att.numpy(), cmap="cividis", vmin=0, vmax=top)
    ax.set_xticks(range(len(tokens)), tokens, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("key token (attended to)")
    ax.set_ylabel("query token")
    for i in range(len(tokens)):
        for j in range(len(tokens)):
            value = float(att[i, j])
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.6 * top else "black",
            )
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
