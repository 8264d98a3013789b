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
    row = ManifestRow.as_is("bench0", (depth, size, size), source="bench")
    write_manifest(root / "manifest.csv", [row])
    write_nodules(root / "nodules.csv", [])
    return root
