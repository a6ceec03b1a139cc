"""Split a data set across clients: every kind of client heterogeneity, composable.

A scheme returns a :class:`Partition`: per-client index arrays into the data set (never
copies) plus per-client ``present`` and ``labeled`` masks and feature transforms. Label and
quantity schemes make the split; :func:`feature_skew`, :func:`missing_modalities` and
:func:`scarce_labels` return a new Partition on top of any other one;
:func:`corrupt_clients` breaks some clients' training data; :mod:`.skew` measures a split.

One kind of heterogeneity per file, a scheme per function:

- ``core``: :class:`Partition`, :class:`ClientData`, :func:`holdout`, the feature transforms;
- ``splits``: :func:`iid`, :func:`dirichlet`, :func:`shards`, :func:`pathological`,
  :func:`quantity_skew`;
- ``overlays``: :func:`feature_skew`, :func:`missing_modalities`, :func:`scarce_labels`;
- ``corruption``: :func:`corrupt_clients`;
- ``skew``: how skewed a split is (:func:`~.skew.report`, :func:`~.skew.summary`, ...).

References are in each module. Every function takes ``seed`` (an int or a
``np.random.Generator``) and never touches the global random state.
"""

from . import skew
from .core import (
    FEATURE_KINDS,
    ClientData,
    Partition,
    apply_transform,
    holdout,
    stratified_mask,
)
from .corruption import CORRUPTIONS, corrupt_clients
from .overlays import feature_skew, missing_modalities, scarce_labels
from .splits import dirichlet, iid, pathological, quantity_skew, shards

__all__ = [
    "CORRUPTIONS",
    "FEATURE_KINDS",
    "ClientData",
    "Partition",
    "apply_transform",
    "corrupt_clients",
    "dirichlet",
    "feature_skew",
    "holdout",
    "iid",
    "missing_modalities",
    "pathological",
    "quantity_skew",
    "scarce_labels",
    "shards",
    "skew",
    "stratified_mask",
]
