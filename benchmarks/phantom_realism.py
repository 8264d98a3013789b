"""Realism of phantoms against the real whole-chest series: tissue fractions and Wasserstein.

Usage:  PYTHONPATH=src python benchmarks/phantom_realism.py --size 64 --seeds 0-29
        [--reference ../shared/data/ct/lung-pet-ct-dx/Lung_Dx-A0001/chest-5mm]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctsgan.data.phantom import make_phantom
from ctsgan.data.realism import REAL_FRACTION_RANGES, body_histogram, read_reference, realism_report

DEFAULT_REF = Path(__file__).resolve().parents[1].parent / "shared/data/ct/lung-pet-ct-dx/Lung_Dx-A0001/chest-5mm"


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=_seeds, default=_seeds("0-4"))
    ap.add_argument("--reference", type=Path, default=DEFAULT_REF)
    args = ap.parse_args()
    ref, _ = read_reference(args.reference)
    ref_hist = body_histogram(ref)
    bounds = {**REAL_FRACTION_RANGES, "wasserstein_hu": (0.0, 100.0)}
    print(f"reference {args.reference}: {realism_report(ref, ref_hist)}")
    print(f"{'seed':>5} {'lung':>6} {'soft':>6} {'fat':>6} {'bone':>6} {'W HU':>6}  ok")
    n_ok = 0
    for seed in args.seeds:
        rep = realism_report(make_phantom(args.size, seed).hu, ref_hist)
        ok = all(lo <= rep[k] <= hi for k, (lo, hi) in bounds.items())
        n_ok += ok
        print(f"{seed:>5} {100 * rep['lung']:>5.1f}% {100 * rep['soft']:>5.1f}% {100 * rep['fat']:>5.1f}% "
              f"{100 * rep['bone']:>5.1f}% {rep['wasserstein_hu']:>6.1f}  {'yes' if ok else 'NO'}")
    print(f"{n_ok}/{len(args.seeds)} phantoms of {args.size}^3 inside every bound")


if __name__ == "__main__":
    main()
