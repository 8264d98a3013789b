"""Time ``make_phantom`` per size (wall and process CPU seconds) and print a table.

Usage:  PYTHONPATH=src python benchmarks/phantom_speed.py --sizes 64 128 224 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

from ctsgan.data.phantom import make_phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nodules", action="store_true")
    args = ap.parse_args()
    print(f"{'size':>5} {'wall s (median)':>16} {'cpu s (median)':>15} {'MB out':>7}")
    for size in args.sizes:
        walls, cpus = [], []
        for seed in range(args.seeds):
            t, c = time.perf_counter(), time.process_time()
            p = make_phantom(size, seed, nodules=args.nodules)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        print(f"{size:>5} {statistics.median(walls):>16.2f} {statistics.median(cpus):>15.2f} {p.hu.nbytes / 2**20:>7.1f}")


if __name__ == "__main__":
    main()
