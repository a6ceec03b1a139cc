"""Why the kit runs torch on one thread: FedAvg timed at 1 and 2 threads, quiet and loaded.

    python -m benchmarks.threads            # 5 runs per cell (about 2 minutes)
    python -m benchmarks.threads --quick    # tiny sizes, for a smoke test

Workload (issue 19): FedAvg, 10 clients, 5 rounds, ``synthetic(3000)``, 1 local epoch,
batch 32. "Loaded" runs one busy Python process (a spin loop) beside the run, as a second
test worker, a browser or a video call would on a laptop. Each cell gives min-max and median.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics

import torch

from benchmarks.engine import time_run, workload


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def measure(threads: int, loaded: bool, runs: int, n: int, rounds: int) -> list[float]:
    clients, spec, test = workload(10, n)
    torch.set_num_threads(threads)
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,), daemon=True) if loaded else None
    if spinner is not None:
        spinner.start()
    try:
        time_run(clients, spec, test, 1)  # warm-up
        return [time_run(clients, spec, test, rounds) for _ in range(runs)]
    finally:
        stop.set()
        if spinner is not None:
            spinner.join()


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    n, rounds, runs = (400, 1, 1) if args.quick else (3000, 5, args.runs)
    rows = []
    for loaded in (False, True):
        for threads in (1, 2):
            times = measure(threads, loaded, runs, n, rounds)
            rows.append({"load": "one busy process" if loaded else "quiet", "threads": threads,
                         "min": min(times), "median": statistics.median(times),
                         "max": max(times)})  # fmt: skip
    print(f"FedAvg, 10 clients, {rounds} rounds, synthetic({n}); seconds over {runs} runs")
    print(f"{'machine':<18} {'threads':>7} {'min':>7} {'median':>7} {'max':>7}")
    for r in rows:
        print(f"{r['load']:<18} {r['threads']:>7} {r['min']:>7.2f} {r['median']:>7.2f} "
              f"{r['max']:>7.2f}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
