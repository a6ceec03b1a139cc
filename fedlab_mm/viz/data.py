"""Plots of the data sets: samples, spectrograms, how informative each modality is."""

from __future__ import annotations

import numpy as np
import torch

from .common import PALETTE, _plt


def spectrogram(ax, spec: torch.Tensor, clip_seconds: float = 0.8, title: str | None = None):
    """Draw one log-mel spectrogram ``(n_mels, frames)`` on ``ax``.

    Colours stretch from the clip's 2nd to its 99.5th percentile, so a word stands out
    from the noise floor however loud the noise is.
    """
    spec = torch.as_tensor(spec).detach().cpu().numpy()
    lo, hi = np.percentile(spec, [2, 99.5])
    image = ax.imshow(
        spec,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=lo,
        vmax=max(hi, lo + 1e-6),
        extent=(0, clip_seconds, 0, spec.shape[0]),
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title)
    return image


def show_sample(ds, i: int, clip_seconds: float = 0.8):
    """One sample as every modality it has: image, spectrogram, caption (+ embedding)."""
    plt = _plt()
    names = ds.names
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    label = ds.classes[int(ds.y[i])]
    for ax, name in zip(axes[0], names):
        x = ds.modalities[name][i]
        if name == "image":
            ax.imshow(x.squeeze(0).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"image (28 x 28 pixels)\nlabel: {label}")
            ax.axis("off")
        elif name == "audio":
            voice = ds.meta.get("voice", ["?"] * len(ds))[i]
            spectrogram(ax, x, clip_seconds, title=f"audio: log-mel\nvoice {voice}")
        elif name == "text":
            caption = ds.meta.get("caption", [""] * len(ds))[i]
            ax.plot(x.numpy(), lw=0.6, color=PALETTE[0])
            ax.set_title(f'text: "{caption}"\n384-d MiniLM embedding', fontsize=10)
            ax.set_xlabel("embedding dimension")
            ax.set_ylabel("value")
        else:
            ax.plot(x.flatten().numpy(), lw=0.8, color=PALETTE[0])
            ax.set_title(f"{name} ({x.numel()} features)")
            ax.set_xlabel("feature")
    fig.tight_layout()
    return fig


def sample_grid(ds, modality: str = "image", per_class: int = 6, seed: int = 0):
    """A grid: one row per class, ``per_class`` random samples of one image-like modality."""
    plt = _plt()
    if modality not in ds.modalities:
        raise ValueError(f"modality={modality!r} is not in the dataset; it has {ds.names}")
    x = ds.modalities[modality]
    if x.ndim not in (3, 4):
        raise ValueError(f"modality {modality!r} is not image-like (shape {tuple(x.shape)})")
    rng = np.random.default_rng(seed)
    c = ds.num_classes
    fig, axes = plt.subplots(c, per_class, figsize=(1.1 * per_class, 1.1 * c), squeeze=False)
    for k in range(c):
        pool = np.flatnonzero(ds.y.numpy() == k)
        pick = rng.choice(pool, size=min(per_class, len(pool)), replace=False) if len(pool) else []
        for j, ax in enumerate(axes[k]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(pick):
                sample = x[pick[j]].squeeze(0) if x.ndim == 4 else x[pick[j]]
                if modality == "image":
                    ax.imshow(sample.numpy(), cmap="gray_r", vmin=0, vmax=1)
                else:
                    spectrogram(ax, sample)
                    ax.set_xlabel("")
                    ax.set_ylabel("")
                    ax.set_xticks([])
                    ax.set_yticks([])
        axes[k][0].set_ylabel(ds.classes[k], rotation=0, ha="right", va="center")
    fig.suptitle(f"{modality}: {per_class} random samples per class")
    fig.tight_layout()
    return fig


def probe_accuracy(ds, seed: int = 0, modalities=None) -> dict[str, float]:
    """Test accuracy of a logistic-regression probe on each modality alone (70/30 split).

    A quick measure of how informative a modality is about the label. ``modalities``
    limits the probe to some of them (default: all).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = ds.y.numpy()
    out = {}
    names = ds.names if modalities is None else list(modalities)
    unknown = [m for m in names if m not in ds.modalities]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in the dataset; it has {ds.names}")
    for name in names:
        X = ds.modalities[name].reshape(len(ds), -1).numpy()
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=0.05, tol=1e-2, max_iter=300)
        ).fit(Xtr, ytr)
        out[name] = float(clf.score(Xte, yte))
    return out


def modality_strength(ds, seed: int = 0):
    """Each modality projected to 2-D (PCA), coloured by class, with its probe accuracy.

    Use it to see a modality go weak as its noise rises.
    """
    plt = _plt()
    acc = probe_accuracy(ds, seed=seed)
    names = ds.names
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), squeeze=False)
    y = ds.y.numpy()
    colours = np.array(PALETTE)[y % len(PALETTE)]
    for ax, name in zip(axes[0], names):
        X = ds.modalities[name].reshape(len(ds), -1).double()
        X = X - X.mean(0)
        _, _, v = torch.linalg.svd(X, full_matrices=False)
        xy = (X @ v[:2].T).numpy()  # (n, 2)
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=6, alpha=0.6, linewidths=0)
        ax.set_title(f"{name}: probe accuracy {acc[name]:.0%}")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    chance = 1 / ds.num_classes
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", color=PALETTE[c % len(PALETTE)], label=name)
        for c, name in enumerate(ds.classes)
    ]
    fig.legend(handles=handles, title="class", loc="center right", fontsize=8)
    fig.suptitle(f"each modality alone, coloured by class (chance = {chance:.0%})")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return fig


def completion_gallery(truth: torch.Tensor, filled: dict, labels=None, n: int = 8):
    """What each completion strategy put where an image was missing.

    Parameters
    ----------
    truth : Tensor (k, 1, H, W)
        The real (hidden) images of ``k`` samples whose image was missing.
    filled : dict[str, Tensor (k, 1, H, W)]
        Strategy name -> the images it filled in for the same samples.
    labels : sequence of str, optional
        Column titles (e.g. the true class).
    n : int
        How many samples (columns) to show.
    """
    plt = _plt()
    rows = {"real (hidden)": truth, **filled}
    n = min(n, len(truth))
    fig, axes = plt.subplots(
        len(rows), n, figsize=(1.15 * n + 1.2, 1.15 * len(rows)), squeeze=False
    )
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(
                images[c].reshape(images.shape[-2], images.shape[-1]).numpy(),
                cmap="gray_r",
                vmin=0,
                vmax=1,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and labels is not None:
                ax.set_title(str(labels[c]), fontsize=9)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("missing images, filled in by each strategy")
    fig.tight_layout()
    return fig
