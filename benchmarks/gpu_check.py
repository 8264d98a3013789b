"""One GPU session's checks: CT-SGAN training / resume / generation on CUDA, then the
`bench generate` numbers at 224 (fp32, tf32, bf16; naive, optimized, compiled).

Usage (repo root, PYTHONPATH=src:tests): python benchmarks/gpu_check.py OUT_DIR
Prints one JSON object per line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from conftest import write_tiny_dataset
from ctsgan.bench.generate import bench_generate
from ctsgan.generation import generate_volumes
from ctsgan.training import train
from ctsgan.training.checkpoint import load_checkpoint
from ctsgan.training.recipes import get_recipe

DEV = os.environ.get("CHECK_DEVICE", "cuda")  # cpu: a local smoke run of this script


def training_check(out: Path) -> dict:
    data = write_tiny_dataset(out / "data", size=32)
    cfg = get_recipe("ctsgan").load_config("tiny")
    cfg.size, cfg.slab_depth, cfg.device = 32, 8, DEV
    t = time.perf_counter()
    train("ctsgan", cfg, data, out / "run", steps=20, progress=False)
    straight_s = time.perf_counter() - t
    last = train("ctsgan", None, data, out / "run", steps=30, resume=True, progress=False)
    state = load_checkpoint(last)
    paths = generate_volumes(out / "run", 3, out / "gen", seed=1, fmt="npy", device=DEV, dtype="bf16")
    again = generate_volumes(out / "run", 1, out / "gen2", seed=1, fmt="npy", device=DEV, dtype="bf16")
    vols = [np.load(p) for p in paths]
    return {
        "check": "cuda_training", "steps": state["step"], "seconds_20_steps": straight_s,
        "finite": all(bool(torch.isfinite(v).all()) for v in state["generator"].values() if v.is_floating_point()),
        "volume_shape": list(vols[0].shape), "hu_range": [int(min(v.min() for v in vols)), int(max(v.max() for v in vols))],
        "deterministic": bool(np.array_equal(np.load(again[0]), vols[0])),
    }


def main() -> None:
    out = Path(sys.argv[1])
    name = torch.cuda.get_device_name() if DEV == "cuda" else "cpu"
    print(json.dumps({"device": name, "torch": torch.__version__}), flush=True)
    print(json.dumps(training_check(out)), flush=True)
    if DEV != "cuda":
        return
    for kw in (
        dict(dtype="bf16"), dict(dtype="fp32"), dict(dtype="tf32"),
        dict(dtype="bf16", naive=True), dict(dtype="fp32", naive=True), dict(dtype="bf16", compile=True),
    ):
        r = bench_generate(size=224, device="cuda", repeats=7, **kw)  # type: ignore[arg-type]
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
