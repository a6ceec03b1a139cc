"""Our engine against Flower's simulation engine: one FedAvg workload, wall time and peak memory.

    python -m benchmarks.vs_flower            # 10 and 50 clients, median of 3 (about 8 minutes)
    python -m benchmarks.vs_flower --quick    # 3 clients, 1 round, 1 run (a smoke test)

Workload: :func:`benchmarks.engine.workload` (5,000 synthetic samples, 2 modalities, MLP
encoders, Dirichlet 0.5), 1 local epoch, batch 32, FedAvg, 5 rounds, every client evaluated
every round (its own model and the model the server sent it); the same clients, model and seed
on both engines (``fedlab_mm.flower`` runs the kit's clients and strategy on Flower).

Each run is a fresh Python process. Its wall time is measured inside it, from building the run
to its end (Ray's start-up is part of Flower's cost; loading the data is not timed). Its peak
memory is measured from outside: the largest sum of the resident memory of the process and all
its descendants (Ray's raylet, GCS and worker processes), sampled every 50 ms. The kit runs in
one process with torch's default threads; Flower gives each client one CPU (Ray then runs two
clients at a time on a 2-core machine, each with one thread).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

ENGINES = ("kit", "flower")


def _child(engine: str, num_clients: int, rounds: int, n_samples: int) -> None:
    """Run one workload in this process; print its wall time as JSON."""
    import logging

    from benchmarks.engine import workload
    from fedlab_mm import federated as F

    clients, spec, _ = workload(num_clients, n_samples)
    start = time.perf_counter()
    recipe = F.Recipe(spec, F.LocalTrainer(epochs=1, batch_size=32), F.FedAvg())
    if engine == "kit":
        F.simulate(clients, *recipe, rounds=rounds, progress=False)
    else:
        from fedlab_mm.flower import run_simulation

        logging.disable(logging.INFO)  # Flower logs every round at INFO
        run_simulation(clients, recipe, rounds)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a process that just ended
            pass
    return total


def measure(engine: str, num_clients: int, rounds: int, n_samples: int) -> dict:
    """One run in a fresh process: ``{"seconds": wall time, "peak_mb": peak tree memory}``."""
    import psutil

    args = [sys.executable, "-m", "benchmarks.vs_flower", "--child", engine,
            str(num_clients), str(rounds), str(n_samples)]  # fmt: skip
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_rss(proc))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{err[-3000:]}")
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    return {"seconds": seconds, "peak_mb": peak / 2**20}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 clients, 1 round, 1 run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        engine, clients, rounds, n = args.child
        _child(engine, int(clients), int(rounds), int(n))
        return []
    n, rounds, sizes, repeats = (
        (600, 1, (3,), 1) if args.quick else (5000, 5, (10, 50), args.repeats)
    )
    rows = []
    for num_clients in sizes:
        row = {"clients": num_clients, "rounds": rounds}
        for engine in ENGINES:
            runs = [measure(engine, num_clients, rounds, n) for _ in range(repeats)]
            row[f"{engine} s"] = statistics.median(r["seconds"] for r in runs)
            row[f"{engine} MB"] = statistics.median(r["peak_mb"] for r in runs)
        row["time ratio (flower / kit)"] = row["flower s"] / row["kit s"]
        row["memory ratio (flower / kit)"] = row["flower MB"] / row["kit MB"]
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
              flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
