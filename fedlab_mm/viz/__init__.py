"""Plots, in eight modules a reader can find their way in: ``common``, ``data``,
``partitions``, ``training``, ``features``, ``broadcast``, ``hetero`` and ``grid``; everything is
re-exported here, so ``fm.viz.<name>`` works.

Pure functions: data in, a matplotlib Figure out, so each is testable without a
display and sliders can wrap them with ``ipywidgets.interact``.

Conventions: titled, labelled axes (with units), colour-blind-safe palettes, one idea per
figure. matplotlib is imported inside the functions so ``import fedlab_mm`` stays light.
"""

from __future__ import annotations

from .broadcast import per_class_accuracy, query_weights, rank_and_skew, uplink_bars
from .common import PALETTE, draw_curves
from .data import (
    completion_gallery,
    modality_strength,
    probe_accuracy,
    sample_grid,
    show_sample,
    spectrogram,
)
from .features import attention_map, feature_projection, recovery_curves
from .grid import grid_curves, method_bars
from .hetero import accuracy_by_size, recovery_vs_noise, relevance_maps
from .partitions import (
    availability,
    client_class_bars,
    client_samples,
    compare_partitions,
    label_bubbles,
    label_heatmap,
    skew_metrics,
)
from .training import (
    cka_heatmap,
    curves,
    mixing_weights,
    similarity_graph,
    similarity_heatmap,
    sweep_plot,
)

__all__ = [
    "PALETTE",
    "draw_curves",
    "grid_curves",
    "method_bars",
    "spectrogram",
    "show_sample",
    "sample_grid",
    "probe_accuracy",
    "modality_strength",
    "completion_gallery",
    "client_class_bars",
    "label_heatmap",
    "label_bubbles",
    "compare_partitions",
    "availability",
    "skew_metrics",
    "client_samples",
    "curves",
    "sweep_plot",
    "mixing_weights",
    "similarity_graph",
    "cka_heatmap",
    "similarity_heatmap",
    "recovery_curves",
    "feature_projection",
    "attention_map",
    "uplink_bars",
    "query_weights",
    "per_class_accuracy",
    "rank_and_skew",
    "relevance_maps",
    "recovery_vs_noise",
    "accuracy_by_size",
]
