"""The papers' claims set against what the grid measures, and checks of a notebook's prose.

:data:`CLAIMS` holds each paper's headline claim as a comparison the grid can run,
:func:`verdict` and :func:`claims_table` turn paired differences into a verdict, and
:func:`expect` checks a sentence of a notebook against the numbers a cell printed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .. import config
from ..knobs import KNOBS, check_setting
from ..recipes import METHODS, Scale
from .grid import describe_setting, run_cells, seed_list

__all__ = [
    "CLAIMS",
    "CLAIM_KINDS",
    "Claim",
    "claim_cells",
    "claims_table",
    "expect",
    "run_claims",
    "verdict",
]


@dataclasses.dataclass(frozen=True)
class Claim:
    """A paper's headline claim as a comparison the grid can measure: ``method`` against
    ``baseline`` on ``setting``, by ``metric`` (higher is better).

    ``margin`` is the practical margin, fixed before looking at any result: a gain smaller than
    it does not count (default 0.01, one point of accuracy). ``kind`` is ``"better"`` for "beats"
    claims and ``"as good"`` for "as well as" claims (non-inferiority: the method may trail by
    less than ``margin``). :func:`claims_table` turns both into a verdict.
    """

    paper: str
    claim: str
    setting: dict
    method: str
    baseline: str
    metric: str = "accuracy"
    margin: float = 0.01
    kind: str = "better"

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"kind={self.kind!r} must be one of {CLAIM_KINDS}")
        if not (isinstance(self.margin, (int, float)) and 0 <= self.margin < 1):
            raise ValueError(f"margin={self.margin!r} must be a number in [0, 1)")


#: The two kinds of claim: superiority and non-inferiority.
CLAIM_KINDS = ("better", "as good")


#: One echo per paper (claims as MECHANISMS.md states them; settings chosen to echo them).
CLAIMS = (
    Claim(
        "FedEPA",
        "beats FL baselines under limited labels (and non-IID data)",
        {"alpha": 0.1, "labeled_fraction": 0.1},
        "fedepa",
        "fedavg",
    ),
    Claim(
        "FedEPA (ALA)",
        "learned mixing of the global model beats plain FedAvg under label skew",
        {"alpha": 0.1},
        "ala",
        "fedavg",
        "served_accuracy",
    ),
    Claim(
        "FedEPA (ALA), after training",
        "the same, measured after each client's local epochs",
        {"alpha": 0.1},
        "ala",
        "fedavg",
    ),
    Claim(
        "FedMVP",
        "frozen-model completion + MCM/RAM + CKA graph beats baselines at high missing rates",
        {"missing_rate": 0.8},
        "fedmvp",
        "zero_fill",
    ),
    Claim(
        "FedMVP, beyond completion",
        "MCM/RAM and the CKA server add to frozen-model completion",
        {"missing_rate": 0.8},
        "fedmvp",
        "frozen_fill",
    ),
    Claim(
        "FedMVP (CKA graph)",
        "CKA-weighted aggregation is robust when some clients are broken",
        {"corrupted_fraction": 0.3},
        "cka",
        "fedavg",
        "server_accuracy",
    ),
    Claim(
        "FedAlign, reduced (no server text tuning)",
        "clients sending only LoRA adapters and prototypes learn as well as clients sending "
        "every weight (the served models, notebook 07's metric and skew)",
        {"alpha": 0.5},
        "fedalign",
        "full_fedavg",
        "served_accuracy",
        kind="as good",
    ),
    Claim(
        "FedMosaic",
        "RELA + shared P/Q beats local training (mean over three model sizes; one task for "
        "every client here, so relevance has nothing to tell apart: notebook 08 has tasks)",
        {},
        "rela",
        "sized_local",
    ),
)


def claim_cells(claims=CLAIMS) -> list[tuple[str, dict]]:
    """The (method, setting) pairs the claims need, without repeats."""
    out = []
    for c in claims:
        for m in (c.method, c.baseline):
            if (m, c.setting) not in out:
                out.append((m, c.setting))
    return out


def run_claims(
    claims=CLAIMS, seeds=3, scale=None, cache=None, processes: int = 1, progress: bool = True
) -> pd.DataFrame:
    """Run the cells ``claims`` need (:func:`claim_cells`) like :func:`grid` does: cached,
    with a progress bar, optionally in several processes; returns the tidy rows."""
    scale = scale or Scale.default()
    cells = [
        (m, check_setting(s), k, scale) for m, s in claim_cells(claims) for k in seed_list(seeds)
    ]
    return run_cells(cells, cache, processes, progress)


def expect(statement: str, holds, *, smoke: bool = False) -> None:
    """Check a claim the notebook's prose makes against the numbers a cell just printed.

    Put it in the cell that prints the numbers, with the sentence the markdown below will
    say. A full run that contradicts the sentence then stops with an ``AssertionError``
    naming it, instead of leaving prose that its own table contradicts.

    Parameters
    ----------
    statement : str
        The claim, in the words of the prose (e.g. ``"ALA is level with FedAvg + its local
        epoch"``).
    holds : bool
        Whether the printed numbers support it (a Python or NumPy bool).
    smoke : bool
        Also check it in smoke mode. Most claims need the full sizes (smoke runs train for
        two rounds on a few hundred samples), so by default a smoke run prints the claim
        as not checked; set ``smoke=True`` for claims that hold at any size.

    It returns nothing (so a notebook cell that ends with it shows only its line), prints
    ``checked: ...`` or ``not checked in smoke mode: ...``, and raises when the claim fails.

    Examples
    --------
    >>> expect("two is more than one", 2 > 1, smoke=True)
    checked: two is more than one
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement={statement!r} must be the claim's text, a non-empty str")
    if not isinstance(holds, (bool, np.bool_)):
        raise ValueError(
            f"holds={holds!r} must be a bool (the comparison itself), not {type(holds).__name__}"
        )
    if config.smoke() and not smoke:
        print(f"not checked in smoke mode: {statement}")
        return
    if not holds:
        raise AssertionError(f"the notebook claims '{statement}', but its numbers say otherwise")
    print(f"checked: {statement}")


def verdict(diff, margin: float = 0.01, kind: str = "better", level: float = 0.95):
    """The mean of the per-seed differences ``diff``, its confidence interval over seeds
    (Student's t, ``level``) and the verdict for a claim of ``kind`` with practical ``margin``:

    - ``"better"``: *holds* when the interval lies above 0 and the mean reaches ``margin``;
      *does not hold* when the whole interval lies below ``margin`` (any gain is too small to
      matter, or it is a loss);
    - ``"as good"``: *holds* when the interval lies above ``-margin``; *does not hold* when it
      lies below ``-margin``;
    - *inconclusive* otherwise: the seeds disagree too much to say (3 seeds give wide
      intervals: t = 4.30 at 95%).

    Returns ``(mean, low, high, verdict)``.
    """
    from scipy import stats

    diff = np.asarray(diff, dtype=float)
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2:
        raise ValueError(f"a verdict needs at least 2 seeds with both methods, got {len(diff)}")
    mean = float(diff.mean())
    half = float(stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / len(diff) ** 0.5)
    low, high = mean - half, mean + half
    if kind == "better":
        word = (
            "holds"
            if low > 0 and mean >= margin
            else "does not hold"
            if high < margin
            else "inconclusive"
        )
    else:
        word = "holds" if low > -margin else "does not hold" if high < -margin else "inconclusive"
    return mean, low, high, word


def claims_table(df: pd.DataFrame, claims=CLAIMS) -> pd.DataFrame:
    """Each claim with both methods' mean ± std over seeds, the mean per-seed difference with
    its 95% confidence interval, the seeds the method won, the uplink per client and round,
    and the :func:`verdict` for the claim's kind and practical margin."""
    rows = []
    for c in claims:
        full = check_setting(c.setting)
        at = np.logical_and.reduce([np.isclose(df[k], full[k]) for k in KNOBS])
        cells = df[at].set_index(["method", "seed"])
        if not {c.method, c.baseline} <= set(cells.index.get_level_values("method")):
            raise ValueError(f"df has no cells for {c.method!r} and {c.baseline!r} at {c.setting}")
        a, b = cells[c.metric].loc[c.method], cells[c.metric].loc[c.baseline]
        up = cells["uplink_kb"]
        diff = (a - b).dropna()
        mean, low, high, word = verdict(diff, c.margin, c.kind)
        rows.append(
            {
                "paper": c.paper,
                "claim": c.claim,
                "setting": describe_setting(c.setting),
                "metric": c.metric,
                "method": METHODS[c.method].label,
                "method score": f"{a.mean():.3f} ± {a.std():.3f}",
                "baseline": METHODS[c.baseline].label,
                "baseline score": f"{b.mean():.3f} ± {b.std():.3f}",
                "difference": round(mean, 3),
                "95% interval": f"{low:+.3f} to {high:+.3f}",
                "needs": ("> " if c.kind == "better" else "> -") + f"{c.margin:g}",
                "seeds won": f"{int((diff > 0).sum())}/{len(diff)}",
                "uplink kB": f"{up.loc[c.method].mean():.0f} vs {up.loc[c.baseline].mean():.0f}",
                "verdict": word,
            }
        )
    return pd.DataFrame(rows)
