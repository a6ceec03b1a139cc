"""Known values, one record per CPU the suite has been measured on.

A run is deterministic on one machine, but float rounding differs between CPUs (the vector
width and the BLAS kernels each one gets), and a few rounds of training carry a last-bit
difference into the accuracies, by a few test samples. On the two CPUs measured so far the
same seeded runs differ by up to 0.04:

- ``A``: the machine of issues 21-23 (the records first written);
- ``B``: a 2-core AMD EPYC with AVX2 and no AVX-512 (issue 24).

A known-value test keeps a record per CPU and passes when the run matches one of them within
its tolerance; the tolerance itself stays what one CPU needs. On a new CPU that matches
neither, rerun the test: its message prints the values to add as that CPU's record.
"""

from __future__ import annotations

import math


def _close(value, known, tol) -> bool:
    if isinstance(known, float) and math.isnan(known):
        return isinstance(value, float) and math.isnan(value)
    return abs(float(value) - float(known)) <= tol + 1e-12


def assert_matches_a_record(name, values, records: dict, tol) -> None:
    """Assert that ``values`` match one of ``records`` (CPU -> sequence) element by element
    within ``tol`` (a number, or one per element)."""
    values = list(values)
    tols = list(tol) if isinstance(tol, (list, tuple)) else [tol] * len(values)
    for record in records.values():
        if len(record) == len(values) and all(map(_close, values, record, tols)):
            return
    raise AssertionError(
        f"{name}: {values} matches none of the records {records} (tolerance {tol}); if only "
        "the CPU changed, add these values as its record (see tests/known.py)"
    )
