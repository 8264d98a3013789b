"""How constant along z each tissue is, real against generated (a diagnostic, not a metric).

For every volume and every tissue range of the z-profile (``ctsgan.data.realism.TISSUE_RANGES``)
the tissue mask's overlap (IoU) between neighbouring axial slices, averaged over the slice pairs
where either slice holds the tissue; then the mean over the volumes. Higher than real: the tissue
repeats along z (coronal / sagittal streaks); lower: it changes slice to slice (speckle). Also the
spine window: voxels > 200 HU in the posterior midline (rows 36-57, columns 24-39 of a 64^3 cube),
the fraction of slices holding a vertebra-sized blob (>= 4 voxels), voxels per slice and the
window's neighbour-slice IoU. docs/real_chest.md reports these numbers.

    PYTHONPATH=src python benchmarks/z_continuity.py --data W/holdout_64/data \
        --generated W/holdout_64/generated [MORE_DIRS ...] [--n 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SPINE_ROWS, SPINE_COLS, SPINE_HU, SPINE_BLOB = slice(36, 58), slice(24, 40), 200.0, 4


def neighbour_iou(mask: np.ndarray) -> float:
    """Mean IoU of a (D, H, W) mask between slices k and k + 1, over pairs where either is non-empty."""
    a, b = mask[:-1].reshape(len(mask) - 1, -1), mask[1:].reshape(len(mask) - 1, -1)
    union = (a | b).sum(axis=1)
    keep = union > 0
    return float(((a & b).sum(axis=1)[keep] / union[keep]).mean()) if keep.any() else float("nan")


def tissue_continuity(vol: np.ndarray) -> dict[str, float]:
    """Each tissue range's :func:`neighbour_iou` in one HU volume."""
    from ctsgan.data.realism import TISSUE_RANGES

    return {name: neighbour_iou((vol >= lo) & (vol < (np.inf if hi is None else hi)))
            for name, (lo, hi) in TISSUE_RANGES.items()}


def spine_window(vol: np.ndarray) -> dict[str, float]:
    """The posterior midline bone window of a 64^3 cube: blob fraction, voxels per slice, neighbour IoU."""
    bone = vol[:, SPINE_ROWS, SPINE_COLS] > SPINE_HU
    per_slice = bone.sum(axis=(1, 2))
    return {"slices_with_blob": float((per_slice >= SPINE_BLOB).mean()), "voxels_per_slice": float(per_slice.mean()),
            "iou": neighbour_iou(bone)}


def summarise(vols: list[np.ndarray]) -> dict[str, float]:
    """Means over the volumes of :func:`tissue_continuity` and :func:`spine_window` (keys ``spine_*``)."""
    rows = [tissue_continuity(v) | {f"spine_{k}": x for k, x in spine_window(v).items()} for v in vols]
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset: the real volumes (every split)")
    ap.add_argument("--generated", type=Path, nargs="+", required=True, help="folders of generated .npy volumes")
    ap.add_argument("--n", type=int, default=64, help="generated volumes per folder (the first n by name)")
    args = ap.parse_args(argv)
    from ctsgan.data.dataset import PreparedDataset

    ds = PreparedDataset(args.data)
    sets = {"real": summarise([np.asarray(ds.load(i)) for i in range(len(ds))])}
    for d in args.generated:
        paths = sorted(d.glob("*.npy"))[: args.n]
        if not paths:
            raise SystemExit(f"{d}: no .npy volumes")
        sets[str(d)] = summarise([np.load(p) for p in paths])
    keys = list(sets["real"])
    print("| set | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, s in sets.items():
        print(f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
