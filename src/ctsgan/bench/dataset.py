"""The one-volume prepared dataset the training benchmarks step on (``bench memory``, ``bench train``)."""

from __future__ import annotations

from pathlib import Path


def write_bench_dataset(root: Path, size: int, depth: int, seed: int = 0) -> Path:
    """A one-volume prepared dataset (train split) of smooth random HU, shape (depth, size, size)."""
    import numpy as np

    from ctsgan.data.dataset import ManifestRow, write_manifest, write_nodules
    from ctsgan.io.atomic import atomic_save_npy

    rng = np.random.default_rng(seed)
    vol = rng.integers(-1000, 400, size=(depth, size, size), dtype=np.int16)
    atomic_save_npy(root / "volumes" / "bench0.npy", vol)
    row = ManifestRow(
        id="bench0", patient_id="bench0", source="bench", input_path="synthetic://bench0", path="volumes/bench0.npy",
        size=size, orig_shape=(depth, size, size), orig_spacing=(1.0, 1.0, 1.0), crop_start=(0, 0, 0),
        crop_shape=(depth, size, size), scale=(1.0, 1.0, 1.0), spacing=(1.0, 1.0, 1.0), has_nodule=False,
        n_nodules=0, split="train",
    )
    write_manifest(root / "manifest.csv", [row])
    write_nodules(root / "nodules.csv", [])
    return root
