"""Structure metrics on known cases: phantoms vs phantoms, and broken "generators" made from them.

Real set A and set B: two disjoint sets of chest phantoms (seed sequences (100, i) and (200, i)).
Each row compares set A (as the real set) with a generated set made from set B:

- real vs real: set B itself (the reference: ~ (0, 1, 1));
- repeated slice: each B volume's middle axial slice repeated along z;
- copies: B's first volume N times;
- z-flipped: each B volume upside down (feet -> head);
- shuffled: each B volume's axial slices in a random order.

Run (prints a markdown table; about 1 s per phantom at 64^3 on one CPU core, 17 s for -n 8):

    PYTHONPATH=src python benchmarks/structure_metrics_known_cases.py --size 64 -n 8

With ``--prepared DIR`` (a prepared dataset, e.g. of the real chests in ../shared/data/chest),
its volumes in manifest order are cut in two halves: the first half is the real set, the cases
are made from the second half:

    ctsgan prepare ../shared/data/chest --out /tmp/chest64 --size 64
    PYTHONPATH=src python benchmarks/structure_metrics_known_cases.py --prepared /tmp/chest64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ctsgan.data.phantom import make_phantom
from ctsgan.metrics.structure import structure_metrics_from_summaries, volume_structure


def known_cases(vols: list[np.ndarray], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The generated sets of the table, made from the (D, H, W) HU volumes ``vols``."""
    rng = np.random.default_rng(seed)
    return {
        "real vs real": vols,
        "repeated slice": [np.repeat(v[v.shape[0] // 2][None], v.shape[0], axis=0) for v in vols],
        "copies": [vols[0]] * len(vols),
        "z-flipped": [v[::-1] for v in vols],
        "shuffled": [v[rng.permutation(v.shape[0])] for v in vols],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("-n", type=int, default=8, help="volumes per set")
    ap.add_argument("--prepared", type=Path, default=None, help="prepared dataset instead of phantoms (halves)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.prepared is not None:
        from ctsgan.data.dataset import PreparedDataset

        ds = PreparedDataset(args.prepared)
        vols = [ds.load(i, mmap=False) for i in range(len(ds))]
        half = len(vols) // 2
        real = [volume_structure(v) for v in vols[:half]]
        other = vols[half : 2 * half]
        print(f"{args.prepared}: real {ds.ids[:half]}, cases from {ds.ids[half : 2 * half]}\n")
    else:
        real = [volume_structure(make_phantom(args.size, (100, i)).hu) for i in range(args.n)]
        other = [make_phantom(args.size, (200, i)).hu for i in range(args.n)]
        print(f"{2 * args.n} phantoms of {args.size}^3 in {time.perf_counter() - t0:.1f} s\n")
    print("| generated set | z-profile error | per tissue (lung / soft / fat / bone) | orientation "
          "| z-variation ratio | per d (1 / 2 / 4) | diversity ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, vols in known_cases(other).items():
        m = structure_metrics_from_summaries(real, [volume_structure(v) for v in vols])
        tissues = " / ".join(f"{v:.2f}" for v in m["z_profile_error_per_tissue"].values())
        per_d = " / ".join(f"{v:.2f}" for v in m["z_variation_ratio_per_d"].values())
        print(
            f"| {name} | {m['z_profile_error']:.2f} | {tissues} | {m['z_profile_orientation']:.2f} "
            f"| {m['z_variation_ratio']:.2f} | {per_d} "
            f"| {m['diversity_ratio']:.2f} |"
        )
    print(f"\nreal set: z-variation (HU) {m['z_variation_real_hu']}, diversity {m['diversity_real_hu']:.1f} HU; "
          f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
