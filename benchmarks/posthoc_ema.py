"""Which average of G's weights to sample from: post-hoc EMAs of one run, measured side by side.

A CT-SGAN run that kept dense checkpoints (e.g. ``checkpoint_every: 25``, ``keep_last: 1000``)
holds G's weights along training. Each variant averages them as an EMA with its own schedule
would have (the checkpoint at or after each step stands for that step; BatchNorm statistics from
the last G, as the training loop copies them), fits that average's HU calibration on the training
set, samples ``--generate`` volumes (seeds ``volume_seed(1000, i)``) and reports the structure
metrics against the training volumes, calibrated and raw.

Variants: ``kept`` (the run's own EMA weights, exact), ``raw`` (the last G), ``rampB`` (the loop's
schedule ``min(B, (1 + s) / (10 + s))``; ``ramp0.999`` is cpu64's), ``progF`` (StyleGAN2-ADA's
ramp-up: half-life F x steps so far, capped at 0.999).

    ctsgan train --config DENSE.yaml --data DATASET --out RUN --steps 3000
    PYTHONPATH=src python benchmarks/posthoc_ema.py --run RUN --data DATASET --out OUT \\
        --variants kept,raw,ramp0.999,ramp0.99,ramp0.98,prog0.05,prog0.1
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

KEYS = ("z_profile_error", "z_profile_layout_error", "z_variation_ratio", "diversity_ratio")


def ema_betas(variant: str, steps: int) -> np.ndarray:
    """Per-step EMA decay of steps 1 .. ``steps`` for a ``rampB`` / ``progF`` / ``raw`` variant."""
    s = np.arange(1, steps + 1, dtype=np.float64)
    if variant.startswith("ramp"):
        return np.minimum(float(variant[4:]), (1 + s) / (10 + s))
    if variant.startswith("prog"):
        return np.minimum(0.999, 0.5 ** (1 / np.maximum(1.0, float(variant[4:]) * s)))
    if variant == "raw":
        return np.zeros_like(s)
    raise ValueError(f"unknown variant {variant!r} (kept, raw, rampB, progF)")


def checkpoint_weights(betas: np.ndarray, ckpt_steps: np.ndarray) -> np.ndarray:
    """Weight of each kept checkpoint in the EMA after the last step: step s weighs
    (1 - b_s) * prod_{t > s} b_t and counts for the first checkpoint at or after it."""
    tail = np.concatenate([np.cumprod(betas[::-1])[::-1][1:], [1.0]])
    w = (1 - betas) * tail
    idx = np.clip(np.searchsorted(ckpt_steps, np.arange(1, len(betas) + 1)), 0, len(ckpt_steps) - 1)
    cw = np.bincount(idx, weights=w, minlength=len(ckpt_steps))
    return cw / cw.sum()


def averaged_generator(ckpts: list[tuple[int, Path]], weights: np.ndarray, last: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Weighted average of the checkpoints' G weights; BatchNorm buffers from ``last``'s G."""
    from ctsgan.training.checkpoint import load_checkpoint

    avg: dict[str, torch.Tensor] = {}
    keep = np.nonzero(weights > 1e-4)[0]
    for i in keep:
        for k, t in load_checkpoint(ckpts[i][1])["generator"].items():
            if t.is_floating_point() and "running_" not in k:
                avg[k] = avg.get(k, torch.zeros_like(t, dtype=torch.float64)) + t.double() * float(weights[i])
    total = float(weights[keep].sum())
    out = {k: t.clone() for k, t in last["generator"].items()}
    out.update({k: (t / total).float() for k, t in avg.items()})
    return out


def measure(checkpoint: Path, data: str, real: list[np.ndarray], n: int) -> dict[str, dict[str, float]]:
    """Calibrate ``checkpoint`` and measure ``n`` volumes, calibrated and raw."""
    from ctsgan.generation.calibration import calibrate_checkpoint
    from ctsgan.generation.generate import load_generator, volume_seed
    from ctsgan.metrics.structure import structure_metrics

    calibrate_checkpoint(checkpoint, data, device="cpu")
    g = load_generator(checkpoint, "cpu")
    out = {}
    for label, raw in (("calibrated", False), ("raw_hu", True)):
        m = structure_metrics(real, [g.sample(volume_seed(1000, i), raw=raw) for i in range(n)])
        out[label] = {k: round(float(m[k]), 3) for k in KEYS}
    return out


def main() -> None:
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.training.checkpoint import list_checkpoints, load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", required=True, help="the prepared dataset it trained on (train split = reference)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="kept,raw,ramp0.999,ramp0.99,prog0.05")
    ap.add_argument("--generate", type=int, default=16)
    args = ap.parse_args()
    ckpts = list_checkpoints(args.run)
    if not ckpts:
        raise SystemExit(f"{args.run}: no checkpoints")
    last_step, last_path = ckpts[-1]
    last = load_checkpoint(last_path)
    ds = PreparedDataset(args.data, split="train")
    real = [ds.load(i, mmap=False) for i in range(len(ds.rows))]
    steps = np.array([s for s, _ in ckpts])
    results: dict[str, Any] = {"run": str(args.run), "step": last_step, "checkpoints": len(ckpts), "variants": {}}
    for v in args.variants.split(","):
        state = dict(last)
        if v != "kept":
            state["generator_ema"] = averaged_generator(ckpts, checkpoint_weights(ema_betas(v, last_step), steps), last)
        work = args.out / "work" / f"{args.run.name}-{v}" / "checkpoints"  # runs may share --out
        work.mkdir(parents=True, exist_ok=True)
        path = work / last_path.name
        torch.save(state, path)
        results["variants"][v] = m = measure(path, args.data, real, args.generate)
        c, r = m["calibrated"], m["raw_hu"]
        print(f"{v:10s} z-profile {c['z_profile_error']:.2f} layout {c['z_profile_layout_error']:.2f} "
              f"z-variation {c['z_variation_ratio']:.2f} diversity {c['diversity_ratio']:.2f} | raw HU z-profile "
              f"{r['z_profile_error']:.2f} diversity {r['diversity_ratio']:.2f}", flush=True)
        shutil.rmtree(work.parent)
    (args.out / f"posthoc_ema_{args.run.name}_{last_step}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
