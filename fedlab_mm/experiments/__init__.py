"""Method x heterogeneity grids with error bars, the papers' claims side by side, and the
``fedlab-mm`` command.

- ``grid``: :func:`grid` runs every (method, setting, seed) cell of :mod:`fedlab_mm.recipes`,
  caches each finished cell as a JSON file (a re-run skips it), shows a progress bar and can
  use several processes; :func:`summary` and :func:`ranking` condense the tidy rows, and
  :func:`fedlab_mm.viz.grid_curves` plots accuracy against each knob;
- ``claims``: :data:`CLAIMS` and :func:`claims_table` set each paper's headline claim
  against what the grid measures (:func:`verdict`), and :func:`expect` checks a notebook's
  sentence against the numbers a cell printed;
- ``cli``: :func:`main`, the console command (``fedlab-mm grid --help``).

Examples
--------
>>> df = grid(["fedavg", "local"], {"alpha": [0.1, 1.0]}, seeds=2)   # doctest: +SKIP
>>> ranking(df)                                                       # doctest: +SKIP
"""

from .claims import (
    CLAIM_KINDS,
    CLAIMS,
    Claim,
    claim_cells,
    claims_table,
    expect,
    run_claims,
    verdict,
)
from .cli import main
from .grid import (
    describe_setting,
    grid,
    ranking,
    run_cells,
    seed_list,
    setting_label,
    settings_from,
    summary,
)

__all__ = [
    "CLAIMS",
    "CLAIM_KINDS",
    "Claim",
    "claim_cells",
    "claims_table",
    "describe_setting",
    "expect",
    "grid",
    "main",
    "ranking",
    "run_cells",
    "run_claims",
    "seed_list",
    "setting_label",
    "settings_from",
    "summary",
    "verdict",
]
