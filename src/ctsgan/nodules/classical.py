"""A non-GAN nodule injector / eraser: the fallback of the detection experiment.

Used when no trained injector / eraser checkpoints are given (``--nodule-model classical``),
and stated as such in the experiment's output. It follows the same contract as the GAN ones
(see :mod:`ctsgan.experiments.nodule_detection`):

- inject: a soft-tissue ball (diameter in mm, anisotropic spacing respected) with a smooth
  edge and mild texture, centred at a random lung voxel at least one radius away from the lung
  wall (lung mask: :func:`ctsgan.nodules.lung_mask.lung_mask`).
- erase: each listed nodule's ball (1.5 x radius + 1 voxel) is filled with lung parenchyma
  drawn from the HU statistics of a surrounding shell (lung voxels only), blended smoothly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ctsgan.data.dataset import NoduleSpec

NODULE_HU = 30.0  # solid nodule, soft-tissue density
LUNG_THRESHOLD_HU = -500.0


def _distance_mm(shape: Sequence[int], centre: Sequence[float], spacing: Sequence[float]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return np.sqrt(sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, centre, spacing, strict=True)))


def _weight(dist_mm: np.ndarray, radius_mm: float, edge_mm: float) -> np.ndarray:
    """1 inside the ball, 0 outside, a smooth logistic edge of width ~edge_mm."""
    return 1.0 / (1.0 + np.exp(np.clip((dist_mm - radius_mm) / max(edge_mm, 1e-3) * 4.0, -60.0, 60.0)))


def classical_inject(
    hu: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    rng: np.random.Generator,
    diameter_mm: float,
    count: int = 1,
    lung: np.ndarray | None = None,
    radius_scale: float = 1.0,
) -> tuple[np.ndarray, list[NoduleSpec]]:
    """Paste ``count`` soft-tissue balls of ``diameter_mm`` into the lungs of ``hu`` (int16 (z, y, x)).

    Returns the new int16 volume and [(centre (z, y, x) voxels, diameter mm)] of the nodules placed:
    none when no lung voxel lies at least one radius from the lung wall. ``lung``: a precomputed
    bool (z, y, x) lung mask (default: :func:`ctsgan.nodules.lung_mask.lung_mask` of ``hu``).
    ``radius_scale``: the ball's radius is ``radius_scale * diameter_mm / 2`` (1: a sphere whose
    diameter is ``diameter_mm``; real LIDC nodules, whose diameter is the largest in-plane extent,
    have a mean radial HU profile like a ball of about 0.6 of it, docs/real_chest.md).
    """
    from ctsgan.nodules.lung_mask import lung_mask

    if not radius_scale > 0:
        raise ValueError(f"radius_scale must be > 0, got {radius_scale}")
    out = hu.astype(np.float32)
    if lung is None:
        lung = lung_mask(hu, spacing_zyx)
    radius = diameter_mm / 2.0 * float(radius_scale)
    placed: list[NoduleSpec] = []
    if not lung.any():
        return hu.copy(), placed
    depth = ndimage.distance_transform_edt(lung, sampling=spacing_zyx)
    cand = np.argwhere(depth > radius)
    for _ in range(count if len(cand) else 0):
        c = tuple(float(v) for v in cand[rng.integers(len(cand))])
        dist = _distance_mm(hu.shape, c, spacing_zyx)
        w = _weight(dist, radius, edge_mm=min(spacing_zyx))
        texture = NODULE_HU + rng.normal(0.0, 25.0, hu.shape).astype(np.float32)
        out = out * (1.0 - w) + texture * w
        placed.append((c, float(diameter_mm)))  # type: ignore[arg-type]
    return np.clip(np.rint(out), -1024, 3071).astype(np.int16), placed


def classical_erase_radius_mm(diameter_mm: float, spacing_zyx: Sequence[float]) -> float:
    """Radius (mm) of the ball :func:`classical_erase` fills: 1.5 x the nodule radius + one (largest) voxel."""
    return float(diameter_mm) / 2.0 * 1.5 + max(float(s) for s in spacing_zyx)


def classical_erase_extent_mm(diameter_mm: float, spacing_zyx: Sequence[float]) -> float:
    """Radius (mm) beyond which :func:`classical_erase` changes a voxel by < 0.05 % of its blend."""
    return classical_erase_radius_mm(diameter_mm, spacing_zyx) + 2.0 * max(float(s) for s in spacing_zyx)


def classical_erase(
    hu: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    nodules: Sequence[NoduleSpec],
    seed: int = 0,
    lung: np.ndarray | None = None,
) -> np.ndarray:
    """Replace each nodule (centre voxels, diameter mm) with lung-like HU drawn from its surroundings.

    Each nodule's ball (:func:`classical_erase_radius_mm`) is blended (logistic edge one voxel wide)
    towards Gaussian parenchyma texture whose level and spread come from a shell around the ball.
    Without ``lung``: the shell's voxels below -500 HU, median and standard deviation. With ``lung``
    (a bool (z, y, x) lung mask whose hole filling includes the nodules): the shell's lung voxels
    outside every listed nodule's ball, mean and robust spread (1.4826 x MAD), so vessels count
    as much as they do in the lung around; and the blend is limited to the lung mask (weight
    halved on the one-voxel rim outside it, zero beyond), so a nodule touching the chest wall or
    the mediastinum never turns the wall into lung.

    Args:
        hu: int16 HU (z, y, x); spacing_zyx: mm; nodules: (centre (z, y, x) voxels, diameter mm).
        seed: seed of the parenchyma texture.
        lung: optional bool (z, y, x) lung mask of ``hu``.

    Returns:
        int16 (z, y, x); beyond :func:`classical_erase_extent_mm` of every nodule (nearly) unchanged.
    """
    rng = np.random.default_rng(seed)
    out = hu.astype(np.float32)
    inside: np.ndarray | None = None
    if lung is not None:
        if lung.shape != hu.shape:
            raise ValueError(f"lung mask shape {lung.shape} differs from the volume's {hu.shape}")
        inside = np.asarray(lung, dtype=bool).copy()
        for c, d in nodules:
            inside &= _distance_mm(hu.shape, c, spacing_zyx) > classical_erase_radius_mm(d, spacing_zyx)
        lung_b = np.asarray(lung, dtype=bool)
        soft_lung = np.where(lung_b, 1.0, np.where(ndimage.binary_dilation(lung_b), 0.5, 0.0)).astype(np.float32)
    for c, d in nodules:
        r = classical_erase_radius_mm(d, spacing_zyx)
        dist = _distance_mm(hu.shape, c, spacing_zyx)
        ring = (dist > r) & (dist <= r + max(d, 3 * max(spacing_zyx)))
        if inside is None:
            vals = hu[ring & (hu < LUNG_THRESHOLD_HU)].astype(np.float32)
            mu, sd = (float(np.median(vals)), float(vals.std())) if vals.size >= 8 else (-850.0, 30.0)
        else:
            vals = hu[ring & inside].astype(np.float32)
            if vals.size >= 8:
                mu = float(vals.mean())
                sd = 1.4826 * float(np.median(np.abs(vals - np.median(vals))))
            else:
                mu, sd = -850.0, 30.0
        fill = mu + rng.normal(0.0, max(sd, 1.0), hu.shape).astype(np.float32)
        w = _weight(dist, r, edge_mm=max(spacing_zyx))
        if lung is not None:
            w = w * soft_lung
        out = out * (1.0 - w) + fill * w
    return np.clip(np.rint(out), -1024, 3071).astype(np.int16)
