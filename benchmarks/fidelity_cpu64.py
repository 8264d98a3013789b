"""CT-SGAN fidelity at cpu64: does the generator make 3D chests? Variants side by side.

The benchmark behind the 3D-structure numbers and the ablation table in docs/fidelity.md:

1. ``--phantoms`` chest phantoms of 96^3 (seed ``--seed``), prepared to 64^3 cubes (same split seed);
2. each variant (``--variants``; :data:`VARIANTS` names the config overrides on the ``cpu64``
   preset) trained in its own one-thread process, ``--parallel`` at a time, for ``--seconds`` of
   training or ``--steps`` steps, whichever comes first (steps reached go in the results);
3. ``--generate`` volumes per variant (seeds ``volume_seed(1000, i)``); a variant whose run fitted
   an HU calibration (``hu_calibration``, :mod:`ctsgan.data.hu_calibration`) also gets the
   same seeds without it, as the row ``<variant>-raw`` (``--no-raw``: not);
4. one ``ctsgan evaluate`` over all variants: real = the whole prepared set, real/real = its two
   halves, training set = the train split (near-copies); paper FID slice by slice, 2.5D FID per
   plane, z-profile error, z-variation ratio, diversity ratio, figures;
5. ``results.json`` and ``table.md`` (one row per variant, with paper FID / real-real FID) in
   ``--out``; the evaluation's figures in ``--out/eval/figures``.

Run (from the repo root; about ``ceil(variants / parallel) * seconds`` plus evaluation)::

    PYTHONPATH=src python benchmarks/fidelity_cpu64.py --out /tmp/fidelity --seconds 1800 \
        --variants default
    PYTHONPATH=src python benchmarks/fidelity_cpu64.py --out /tmp/ablation --seconds 600 \
        --variants default,paper,no-ema,no-position,r1-1

Targets (issue "CT-SGAN must generate 3D volumes", 30-minute budget): z-profile error <= 0.3,
diversity ratio >= 0.5, z-variation ratio 0.7-1.3, paper FID / real-real FID <= 2, no near-copies.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# name -> overrides on the cpu64 preset. "default" is the preset as shipped; the others each
# undo one choice (or restore the paper), so each row of the table is one ablation.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {"position_dim": 0, "slab_position": False, "d_position_channels": 0, "mbstd_group": 0,
              "ema_beta": 0.0, "penalty_weight": 1.0, "penalty_every": 1, "reuse_fakes": False,
              "g_upsample": "transposed", "shared_positions": False, "d_spectral": False},
    "eager-r1": {"penalty_every": 1},
    "no-reuse": {"reuse_fakes": False},
    # the 2026-11-29 preset's schedule and generator (before lazy R1, reuse and resize upsampling)
    "before-speedups": {"penalty_every": 1, "reuse_fakes": False, "g_upsample": "transposed", "d_spectral": False},
    "transposed-g": {"g_upsample": "transposed"},
    "default-seed1": {"seed": 1},  # the default again from other initial weights and noise: run-to-run spread
    "no-position": {"position_dim": 0, "slab_position": False, "d_position_channels": 0},
    "no-g-position": {"position_dim": 0},
    "no-d-position-channels": {"d_position_channels": 0},
    "no-ema": {"ema_beta": 0.0},
    "mbstd": {"mbstd_group": 4},
    "r1-1": {"penalty_weight": 1.0},
    "r1-0.01": {"penalty_weight": 0.01},
    "wgan-gp": {"loss": "wgan", "penalty": "wgan-gp", "penalty_weight": 10.0},
    # both Ds also see a soft-tissue window (fat vs muscle magnified 4x), and a bone window
    "d-windows": {"d_windows": [[-200.0, 200.0]]},
    "d-windows2": {"d_windows": [[-200.0, 200.0], [100.0, 600.0]]},
    # DiffAugment on every D input (the Ds see 18 volumes)
    "augment": {"augment": ["translation", "cutout"]},
    "augment-t": {"augment": ["translation"]},
    # one slab start / slice positions per batch: the minibatch-std feature then compares volumes
    # at the same anatomy (across random positions it mostly measures the anatomy's own variation)
    "shared-positions": {"shared_positions": True},
    "shared-positions-augment-t": {"shared_positions": True, "augment": ["translation"]},
    "shared-positions-seed1": {"shared_positions": True, "seed": 1},
    # capacity at full resolution: a conv block at 64 px before the output conv, or wider G levels
    # (measured before d_spectral became the default; "default-seed2" was their same-seed baseline)
    "g-refine": {"g_refine": True},
    "g-refine-seed2": {"g_refine": True, "seed": 2},
    "default-seed2": {"seed": 2},
    "default-seed3": {"seed": 3},  # with seed4: more seeds for same-step A/Bs of one change
    "default-seed4": {"seed": 4},
    # a noise volume per generated volume, fed to G_slice at S/2 (3 maps per 3-slice, one 3D field)
    "noise-seed3": {"g_noise": True, "seed": 3},
    "noise-seed4": {"g_noise": True, "seed": 4},
    # the noise volume Gaussian-smoothed along z (1.5 slices): detail that drifts over a few slices
    "smooth-noise-seed3": {"g_noise": True, "g_noise_smooth": (1.5, 0.0), "seed": 3},
    "smooth-noise-seed4": {"g_noise": True, "g_noise_smooth": (1.5, 0.0), "seed": 4},
    "g-wide": {"g_width": 32},
    # SSD-GAN's spectral score in D_slice (measured: generated slices lack high-frequency power);
    # the default since it was measured, so "d-spectral*" = "default" / "default-seed2" from then on
    "no-d-spectral": {"d_spectral": False},
    "d-spectral": {"d_spectral": True},
    "d-spectral-seed2": {"d_spectral": True, "seed": 2},
    "g-refine-d-spectral": {"g_refine": True, "d_spectral": True},
    "g-refine-d-spectral-seed2": {"g_refine": True, "d_spectral": True, "seed": 2},
    # a piecewise-linear HU <-> unit map (ctsgan.data.hu): [-200, 200] HU gets half of G's output
    # range, so fat (-150..-50) and soft tissue (-100..100) lie twice as far apart for G and D
    "hu-curve": {"hu_knots": [[-200.0, -0.5], [200.0, 0.5]]},
    "hu-curve-seed2": {"hu_knots": [[-200.0, -0.5], [200.0, 0.5]], "seed": 2},
}


def prepare_data(work: Path, n: int, seed: int) -> Path:
    """Phantoms (96^3) -> prepared 64^3 dataset under ``work`` (reused when already there)."""
    from ctsgan.data.phantom import write_phantoms
    from ctsgan.data.prepare import prepare_dataset

    dataset = work / "dataset"
    if not (dataset / "manifest.csv").exists():
        write_phantoms(work / "phantoms", n, 96, seed)
        prepare_dataset([work / "phantoms"], dataset, size=64, seed=seed, progress=False)
    return dataset


def train_variant(name: str, dataset: str, run: str, seed: int, steps: int, seconds: float) -> dict[str, Any]:
    """Train one variant in this process (one intra-op thread); returns steps reached and timing."""
    import torch

    from ctsgan.training import train
    from ctsgan.training.checkpoint import load_checkpoint
    from ctsgan.training.recipes import get_recipe

    torch.set_num_threads(1)
    cfg = get_recipe("ctsgan").load_config("cpu64")
    cfg.seed, cfg.steps, cfg.preview_every, cfg.tensorboard = seed, steps, 0, False
    for key, value in VARIANTS[name].items():  # after the run seed: a variant may set its own
        setattr(cfg, key, value)
    t = time.perf_counter()
    ckpt = train("ctsgan", cfg, dataset, run, progress=False, time_limit_s=seconds)
    wall = time.perf_counter() - t
    reached = int(load_checkpoint(ckpt)["step"])
    return {"variant": name, "overrides": VARIANTS[name], "checkpoint": str(ckpt), "steps": reached,
            "train_seconds": round(wall, 1), "steps_per_second": round(reached / wall, 2)}


def generate_variant(checkpoint: str, out: str, n: int, calibrated: bool = True) -> None:
    """``n`` volumes (npy) from ``checkpoint`` into ``out`` (``calibrated``: with its HU calibration, if any)."""
    import torch

    from ctsgan.generation.generate import generate_volumes

    torch.set_num_threads(1)
    generate_volumes(checkpoint, n, out, seed=1000, fmt="npy", device="cpu", progress=False, calibrated=calibrated)


def table(rows: list[dict[str, Any]], metrics: dict[str, Any]) -> str:
    """One markdown row per variant: steps, FIDs, structure metrics, near-copies."""
    rr = metrics.get("real_real_fid_slice_mean")
    ref = metrics.get("real_real_structure", {})
    head = ("| variant | steps | paper FID | / real-real | FID 2.5D (ax / cor / sag) | z-profile error | "
            "z-variation ratio | diversity ratio | near-copies |")
    lines = [head, "|" + " --- |" * 9]

    def f(x: Any, nd: int = 2) -> str:
        return "n/a" if x is None else f"{x:.{nd}f}"

    lines.append(f"| real / real | - | {f(rr)} | 1.00 | - | {f(ref.get('z_profile_error'))} | "
                 f"{f(ref.get('z_variation_ratio'))} | {f(ref.get('diversity_ratio'))} | - |")
    for r in rows:
        m = metrics["fakes"][r["variant"]]
        fid = m.get("fid_slice_mean")
        planes = " / ".join(f(m.get(f"fid_2p5d_{p}"), 1) for p in ("axial", "coronal", "sagittal"))
        ratio = None if fid is None or not rr else fid / rr
        copies = (m.get("memorization") or {}).get("n_flagged")
        lines.append(f"| {r['variant']} | {r['steps']} | {f(fid)} | {f(ratio)} | {planes} | "
                     f"{f(m.get('z_profile_error'))} | {f(m.get('z_variation_ratio'))} | "
                     f"{f(m.get('diversity_ratio'))} | {copies if copies is not None else 'n/a'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="default", help=f"comma-separated, from {sorted(VARIANTS)}")
    ap.add_argument("--seconds", type=float, default=1800.0, help="training budget per variant")
    ap.add_argument("--steps", type=int, default=1_000_000, help="step cap per variant")
    ap.add_argument("--phantoms", type=int, default=24)
    ap.add_argument("--generate", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=2, help="variants trained at once (one thread each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-raw", action="store_true", help="skip the uncalibrated row of calibrated variants")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = prepare_data(args.out, args.phantoms, args.seed)
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        jobs = [pool.submit(train_variant, v, str(dataset), str(args.out / "runs" / v), args.seed, args.steps, args.seconds)
                for v in names]
        rows = [j.result() for j in jobs]
        from ctsgan.data.hu_calibration import calibration_path

        if not args.no_raw:  # the same run without its HU calibration, as its own row
            rows += [{**r, "variant": f"{r['variant']}-raw", "calibrated": False}
                     for r in list(rows) if calibration_path(r["checkpoint"]).is_file()]
        names = [r["variant"] for r in rows]
        gens = [pool.submit(generate_variant, r["checkpoint"], str(args.out / "generated" / r["variant"]), args.generate,
                            r.get("calibrated", True)) for r in rows]
        for g in gens:
            g.result()
    from ctsgan.metrics.evaluate import evaluate

    t = time.perf_counter()
    metrics = evaluate(dataset, {v: args.out / "generated" / v for v in names}, args.out / "eval",
                       figures=True, plane_stride=4, train=f"{dataset}:train", progress=False)
    eval_s = time.perf_counter() - t
    results = {"variants": rows, "evaluate_seconds": round(eval_s, 1), "args": {k: str(v) for k, v in vars(args).items()},
               "metrics": {k: metrics.get(k) for k in ("real_real_fid_slice_mean", "real_real_fid_slice_std",
                                                        "real_real_structure")},
               "per_variant": {v: metrics["fakes"][v] for v in names}}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    md = table(rows, metrics)
    (args.out / "table.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
