"""Scripts that rebuild the README's tables and timings (``python -m benchmarks.<name>``)."""

from __future__ import annotations

import argparse


def quick_args(doc: str, argv=None) -> argparse.Namespace:
    """Parse a table script's command line (``--quick``: a smoke test in seconds) and pin
    torch to one thread, so that the tables do not depend on the machine's core count."""
    import torch

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: seconds, not minutes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return args


def markdown(table, index: bool = True) -> str:
    """A DataFrame as a README (GitHub) table, without pandas' optional ``tabulate``."""
    df = table.reset_index() if index else table
    head = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)
