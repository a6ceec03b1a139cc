"""How heterogeneous is a partition? Per-client and overall skew metrics.

- Label skew: Hellinger and Jensen-Shannon distance between a client's label distribution
  and the global one (0 = identical, 1 = disjoint support), and the effective number of
  classes ``exp(entropy)`` (1 = a single class, C = uniform).
- Quantity skew: the Gini coefficient of client sizes (0 = equal, -> 1 = one client has all).
- Missing modalities and scarce labels: per-modality missing rate and labelled fraction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .core import Partition, labels_of

__all__ = ["hellinger", "js_distance", "effective_classes", "gini", "report", "summary"]


def _as_dist(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if np.any(p < 0):
        raise ValueError("a distribution must be non-negative")
    total = p.sum(-1, keepdims=True)
    return np.divide(p, total, out=np.zeros_like(p), where=total > 0)


def hellinger(p, q) -> np.ndarray:
    """Hellinger distance ``sqrt(1 - sum sqrt(p q))`` along the last axis, in [0, 1].

    Counts are normalised first.

    Examples
    --------
    >>> float(hellinger([1, 0], [0, 1]))
    1.0
    """
    p, q = _as_dist(p), _as_dist(q)
    return np.sqrt(np.clip(1.0 - np.sqrt(p * q).sum(-1), 0.0, 1.0))


def js_distance(p, q) -> np.ndarray:
    """Jensen-Shannon distance (square root of the base-2 JS divergence), in [0, 1]."""
    p, q = np.broadcast_arrays(_as_dist(p), _as_dist(q))
    m = 0.5 * (p + q)

    def kl(a, b):
        ratio = np.divide(a, b, out=np.ones_like(a), where=(a > 0) & (b > 0))
        return (a * np.log2(ratio)).sum(-1)

    return np.sqrt(np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0))


def effective_classes(p) -> np.ndarray:
    """``exp(Shannon entropy)`` of a label distribution: 1 for one class, C for uniform."""
    p = _as_dist(p)
    logp = np.log(np.where(p > 0, p, 1.0))
    return np.exp(-(p * logp).sum(-1))


def gini(sizes) -> float:
    """Gini coefficient of client sizes: 0 when all are equal."""
    x = np.sort(np.asarray(sizes, dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


def report(partition: Partition, data, num_classes: int | None = None) -> pd.DataFrame:
    """One row per client: size, classes held, effective classes, distances to the global
    label distribution, labelled fraction and missing rate per modality."""
    y = labels_of(data)
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    counts = partition.label_counts(y, num_classes)  # (N, C)
    global_dist = np.bincount(y, minlength=num_classes)
    table = pd.DataFrame(
        {
            "client": np.arange(partition.num_clients),
            "size": partition.sizes,
            "classes": (counts > 0).sum(1),
            "effective_classes": effective_classes(counts),
            "hellinger": hellinger(counts, global_dist[None, :]),
            "js_distance": js_distance(counts, global_dist[None, :]),
        }
    )
    if partition.labeled is None:
        table["labeled"] = 1.0
    else:
        table["labeled"] = [m.mean() if len(m) else 0.0 for m in partition.labeled]
    if partition.present is not None:
        for j, name in enumerate(partition.modalities):
            table[f"missing_{name}"] = [
                1.0 - p[:, j].mean() if len(p) else 0.0 for p in partition.present
            ]
    return table.set_index("client")


def summary(partition: Partition, data, num_classes: int | None = None) -> dict[str, float]:
    """Overall skew: sample-weighted means of the per-client metrics, and the size Gini."""
    table = report(partition, data, num_classes)
    w = table["size"].to_numpy(float)
    w = w / w.sum()
    out = {
        "clients": float(partition.num_clients),
        "size_gini": gini(table["size"]),
        "effective_classes": float((table["effective_classes"] * w).sum()),
        "hellinger": float((table["hellinger"] * w).sum()),
        "js_distance": float((table["js_distance"] * w).sum()),
    }
    for col in table.columns:
        if col == "labeled" or col.startswith("missing_"):
            out[col] = float((table[col] * w).sum())
    return out
