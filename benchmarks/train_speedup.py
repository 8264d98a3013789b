"""Training steps/s of this tree against another checkout, side by side in one run.

Runs ``ctsgan bench train --json`` for each tree in turn (``--rounds`` alternating rounds, one
process per measurement, so both see the same machine state), and prints the median steps/s of
each and their ratio. Made for issue "Speed where users wait" (target: 2x today's steps/s for the
quickstart's ``cpu64`` configuration).

    git worktree add /tmp/ctsgan-base 9380f44
    PYTHONPATH=src python benchmarks/train_speedup.py --baseline /tmp/ctsgan-base --config cpu64

A config that is a preset name is resolved by each tree itself (so each runs *its own* cpu64).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(src: Path, config: str, steps: int, warmup: int) -> dict[str, float]:
    """One ``ctsgan bench train --json`` run with ``src`` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "ctsgan", "bench", "train", "--config", config, "--steps", str(steps),
           "--warmup", str(warmup), "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("{"):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout of ctsgan (its src/ is used)")
    ap.add_argument("--config", default="cpu64")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--warmup", type=int, default=16, help="untimed steps (>= penalty_every, so lazy R1 is in the timed mix)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    trees = {"baseline": args.baseline.resolve() / "src", "this": REPO / "src"}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            runs[name].append(measure(src, args.config, args.steps, args.warmup))
    med = {k: statistics.median(r["steps_per_second"] for r in v) for k, v in runs.items()}
    result = {
        "config": args.config,
        "steps_per_second": med,
        "all_steps_per_second": {k: [round(r["steps_per_second"], 2) for r in v] for k, v in runs.items()},
        "gflop_per_step": {k: v[0]["gflop_per_step"] for k, v in runs.items()},
        "speedup": med["this"] / med["baseline"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.config}: baseline {med['baseline']:.2f} steps/s, this tree {med['this']:.2f} steps/s "
              f"-> {result['speedup']:.2f}x (medians of {args.rounds} alternating rounds: "
              f"{result['all_steps_per_second']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
