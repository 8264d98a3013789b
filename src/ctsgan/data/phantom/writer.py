"""``write_phantoms``: a folder of phantom NIfTI volumes that ``ctsgan prepare`` reads.

Layout (what `ctsgan prepare` reads; docs/phantom.md)::

    OUT/<id>.nii.gz                         int16 HU, spacing / origin / direction in the header
    OUT/annotations.csv                     LUNA16: seriesuid, coordX, coordY, coordZ (world mm), diameter_mm
    OUT/ground_truth/<id>_healthy.nii.gz    the volume without nodules
    OUT/ground_truth/<id>_lung_mask.nii.gz  uint8 lungs
    OUT/ground_truth/<id>_nodule_mask.nii.gz uint8 nodules

ids are ``phantom-<seed>-<i:04d>``; volume i comes from the seed sequence ``(seed, i)``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ctsgan.data.phantom.generator import DIRECTION, Phantom, make_phantom
from ctsgan.data.phantom.nodules import NoduleStats
from ctsgan.io.atomic import atomic_path, atomic_write_text

ANNOTATION_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]


def phantom_id(seed: int, i: int) -> str:
    """File id of volume ``i`` of seed ``seed``."""
    return f"phantom-{seed}-{i:04d}"


def write_phantom_nifti(path: Path, volume: np.ndarray, phantom: Phantom) -> Path:
    """Write a (z, y, x) array on ``phantom``'s grid as NIfTI (spacing, origin, direction), atomically."""
    import SimpleITK as sitk

    from ctsgan.io.volumes import array_to_image

    img = array_to_image(volume, phantom.spacing_zyx, phantom.origin_zyx)
    img.SetDirection(DIRECTION)
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    return path


def _write_one(
    out_dir: Path, seed: int, i: int, size: int, nodules: bool, nodule_stats: NoduleStats | None
) -> tuple[Path, list[list[str]]]:
    pid = phantom_id(seed, i)
    ph = make_phantom(size, (seed, i), nodules=nodules, nodule_stats=nodule_stats)
    path = write_phantom_nifti(out_dir / f"{pid}.nii.gz", ph.hu, ph)
    rows: list[list[str]] = []
    if nodules:
        gt = out_dir / "ground_truth"
        write_phantom_nifti(gt / f"{pid}_healthy.nii.gz", ph.healthy, ph)
        write_phantom_nifti(gt / f"{pid}_lung_mask.nii.gz", ph.lung_mask.astype(np.uint8), ph)
        write_phantom_nifti(gt / f"{pid}_nodule_mask.nii.gz", ph.nodule_mask.astype(np.uint8), ph)
        for centre, d in ph.nodules:
            x, y, z = ph.voxel_to_world(centre)
            rows.append([pid, f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", f"{d:.3f}"])
    return path, rows


def write_phantoms(
    out_dir: Path,
    n: int,
    size: int,
    seed: int,
    nodules: bool = False,
    workers: int = 1,
    nodule_stats: NoduleStats | None = None,
) -> list[Path]:
    """Write ``n`` phantoms of shape (size, size, size) into ``out_dir``.

    Args:
        out_dir: output folder (created).
        n: number of volumes; size: cube edge (>= 16); seed: base seed.
        nodules: add nodules and write ``annotations.csv`` and ``ground_truth/``.
        workers: processes in parallel (1 = in this process).
        nodule_stats: nodule size / count distribution (see :func:`make_phantom`).

    Returns:
        Paths of the written volumes, in order of ``i``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: Sequence[tuple[Path, list[list[str]]]]
    if workers == 1 or n <= 1:
        results = [_write_one(out_dir, seed, i, size, nodules, nodule_stats) for i in range(n)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_write_one, out_dir, seed, i, size, nodules, nodule_stats) for i in range(n)]
            results = [f.result() for f in futures]
    if nodules:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(ANNOTATION_COLUMNS)
        for _, rows in results:
            w.writerows(rows)
        atomic_write_text(out_dir / "annotations.csv", buf.getvalue())
    return [p for p, _ in results]
