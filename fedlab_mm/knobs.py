"""The heterogeneity knobs of a grid cell: their names, base values, limits and axis labels.

A *setting* is a dict of some of the four knobs (Dirichlet label skew ``alpha``, a
``missing_rate`` of samples missing one modality, a ``labeled_fraction`` of usable labels, a
``corrupted_fraction`` of clients whose inputs are drowned in noise);
:func:`check_setting` fills in the rest from :data:`BASE`. The recipes
(:mod:`fedlab_mm.recipes`) turn a setting into clients, and the plots
(:func:`fedlab_mm.viz.grid_curves`) read the knobs back from a grid's rows, so both take
them from here.
"""

from __future__ import annotations

import math

__all__ = ["BASE", "KNOBS", "KNOB_AXES", "LIMITS", "check_setting"]

#: The heterogeneity knobs a setting may change, and their base values.
BASE = {"alpha": 1.0, "missing_rate": 0.0, "labeled_fraction": 1.0, "corrupted_fraction": 0.0}
KNOBS = tuple(BASE)
#: Axis label of each knob, and whether it reads best on a log scale.
KNOB_AXES = {
    "alpha": ("Dirichlet alpha (left: more label skew)", True),
    "missing_rate": ("share of samples missing a modality", False),
    "labeled_fraction": ("share of labels clients may use", False),
    "corrupted_fraction": ("share of clients with noise-drowned inputs", False),
}

#: Each knob's allowed values: a test, and how the error message states it.
LIMITS = {
    "alpha": (lambda v: v > 0, "a number > 0"),
    "missing_rate": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "labeled_fraction": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "corrupted_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
}


def check_setting(setting: dict) -> dict:
    """``setting`` with every knob filled in from :data:`BASE`, as floats; a ``ValueError``
    names an unknown knob or a value out of range."""
    unknown = sorted(set(setting) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown setting {unknown}; the knobs are {list(KNOBS)}")
    full = {**BASE, **setting}
    for knob, (allowed, text) in LIMITS.items():
        v = full[knob]
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not (number and allowed(v)):
            raise ValueError(f"{knob}={v!r} must be {text}")
        full[knob] = float(v)
    return full
