"""Body-voxel HU histogram of volume sets: where the voxels sit between and inside the tissue classes.

The z-profile error counts body voxels in each tissue's HU range; a generator whose tissues are
right in place but noisy loses voxels into the gaps between the ranges. This prints, per set, the
fraction of body voxels (``ctsgan.data.realism.body_mask``) in each HU bin, so the two causes can be
told apart. Sets are ``name=GLOB`` of ``.npy`` (z, y, x) HU volumes (a prepared dataset's
``volumes/*.npy``, or ``ctsgan generate --format npy`` output); at most ``--max`` per set.

    python benchmarks/tissue_histogram.py "real=DATASET/volumes/*.npy" "default=GEN/*.npy"
"""

from __future__ import annotations

import argparse
import glob

import numpy as np

BINS: tuple[tuple[float, float, str], ...] = (
    (-np.inf, -950.0, "< -950"),
    (-950.0, -600.0, "lung"),
    (-600.0, -150.0, "-600..-150"),
    (-150.0, -50.0, "fat"),
    (-50.0, 100.0, "-50..100"),
    (100.0, 300.0, "100..300"),
    (300.0, np.inf, "bone >= 300"),
)


def body_fractions(paths: list[str]) -> np.ndarray:
    """Mean over volumes of the fraction of body voxels in each of :data:`BINS`."""
    from ctsgan.data.realism import body_mask

    out = np.zeros(len(BINS))
    for p in paths:
        vol = np.load(p).astype(np.float32)
        body = vol[body_mask(vol)]
        out += [float(((body >= lo) & (body < hi)).mean()) for lo, hi, _ in BINS]
    return out / max(len(paths), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", help="name=GLOB of .npy HU volumes")
    ap.add_argument("--max", type=int, default=16, help="volumes per set")
    args = ap.parse_args(argv)
    print("| set | " + " | ".join(name for _, _, name in BINS) + " |")
    print("| --- " * (len(BINS) + 1) + "|")
    for spec in args.sets:
        name, pattern = spec.split("=", 1)
        paths = sorted(glob.glob(pattern))[: args.max]
        if not paths:
            raise SystemExit(f"{name}: no .npy files match {pattern}")
        print(f"| {name} | " + " | ".join(f"{f:.3f}" for f in body_fractions(paths)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
