"""Shared test fixtures.

- ``shared_ct_dir``: the real public chest CT series (``../shared/data/ct`` beside the repo, or
  ``$CTSGAN_SHARED_CT``); tests that need it are skipped only if it is truly absent.
- ``make_tiny_dataset``: writes a prepared dataset (the DESIGN contract) of small synthetic
  volumes, for tests of training / evaluation that must not depend on ``prepare``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.dataset import ManifestRow, Nodule, write_manifest, write_nodules
from ctsgan.io.atomic import atomic_save_npy

REPO = Path(__file__).resolve().parents[1]


def _shared_ct() -> Path:
    env = os.environ.get("CTSGAN_SHARED_CT")
    return Path(env) if env else REPO.parent / "shared" / "data" / "ct"


@pytest.fixture(scope="session", autouse=True)
def _feature_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``evaluate`` keeps real-set features in a per-user cache (``~/.cache/ctsgan``) by default;
    tests use a temp folder instead (``$CTSGAN_CACHE_DIR``)."""
    os.environ["CTSGAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("feature-cache"))


@pytest.fixture(scope="session")
def shared_ct_dir() -> Path:
    path = _shared_ct()
    if not path.is_dir():
        pytest.skip(f"real CT test data not found at {path}")
    return path


def write_tiny_dataset(
    root: Path,
    n: int = 6,
    size: int = 16,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "train", "train", "train", "validation", "test"),
    nodule_every: int = 2,
) -> Path:
    """Write ``n`` smooth random int16 HU cubes of edge ``size`` as a prepared dataset at ``root``.

    Each volume: air outside a body ellipse, soft tissue (~40 HU) body, two lung blobs
    (~-850 HU). Every ``nodule_every``-th volume gets one 3-voxel soft-tissue nodule listed in
    ``nodules.csv``.
    """
    rng = np.random.default_rng(seed)
    (root / "volumes").mkdir(parents=True, exist_ok=True)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, size),) * 3, indexing="ij")
    rows, nodules = [], []
    for i in range(n):
        vid = f"tiny{i:03d}"
        body = (yy / 0.8) ** 2 + (xx / 0.95) ** 2 < 1.0
        lung_l = ((yy / 0.5) ** 2 + ((xx + 0.45) / 0.35) ** 2 + (zz / 0.9) ** 2) < 1.0
        lung_r = ((yy / 0.5) ** 2 + ((xx - 0.45) / 0.35) ** 2 + (zz / 0.9) ** 2) < 1.0
        vol = np.full((size,) * 3, -1000.0, dtype=np.float32)
        vol[body] = 40.0
        vol[lung_l | lung_r] = -850.0
        vol += rng.normal(0, 20, vol.shape).astype(np.float32)
        has = i % nodule_every == 0
        if has:
            c = size // 2
            cz, cy, cx = c, c, c - size // 4
            vol[(zz - zz[cz, 0, 0]) ** 2 + (yy - yy[0, cy, 0]) ** 2 + (xx - xx[0, 0, cx]) ** 2 < (3 / size) ** 2] = 30.0
            nodules.append(Nodule(vid, float(cz), float(cy), float(cx), 3.0, 3.0))
        atomic_save_npy(root / "volumes" / f"{vid}.npy", np.clip(vol, -1024, 3071).astype(np.int16))
        rows.append(ManifestRow.as_is(vid, (size,) * 3, split=splits[i % len(splits)], source="tiny",
                                      n_nodules=int(has), patient_id=f"P{i:03d}"))
    write_manifest(root / "manifest.csv", rows)
    write_nodules(root / "nodules.csv", nodules)
    return root


@pytest.fixture
def make_tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_tiny_dataset(n=6, size=16, seed=0)`` -> dataset dir under tmp_path."""
    counter = iter(range(1000))

    def make(**kw: object) -> Path:
        return write_tiny_dataset(tmp_path / f"dataset{next(counter)}", **kw)  # type: ignore[arg-type]

    return make
