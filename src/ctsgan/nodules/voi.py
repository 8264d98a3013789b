"""Volumes of interest (VOIs): cubes around nodule centres or random lung points, and their masks.

A VOI is an (S, S, S) cube (S = 64 in the paper, 32 for CPU presets) cut from a (z, y, x)
volume around a centre voxel; parts outside the volume are filled with air (-1024 HU). The
injector / eraser condition on the VOI with a centred sphere masked out: the **mask sphere**
has radius ``mask_scale * r + mask_margin_vox`` (r = nodule radius in voxels, per axis from the
spacing), so it covers the nodule and its boundary. The **nodule sphere** (radius r) marks the
nodule itself for the weighted reconstruction loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from ctsgan.data.hu import AIR_HU

__all__ = [
    "ellipsoid_mask",
    "extract_voi",
    "mask_radius_vox",
    "random_lung_points",
    "voi_slices",
]


def voi_slices(
    shape: Sequence[int], centre_zyx: Sequence[float], size: int
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index ranges of an S^3 VOI centred at ``centre_zyx`` (rounded), clipped to the volume.

    Returns:
        (volume slices, VOI slices): ``voi[voi_sl] = volume[vol_sl]`` copies the overlap.
    """
    vol_sl, voi_sl = [], []
    for n, c in zip(shape, centre_zyx, strict=True):
        start = int(round(float(c))) - size // 2
        lo, hi = max(start, 0), min(start + size, int(n))
        if hi <= lo:
            raise ValueError(f"VOI centre {tuple(centre_zyx)} is outside the volume of shape {tuple(shape)}")
        vol_sl.append(slice(lo, hi))
        voi_sl.append(slice(lo - start, hi - start))
    return tuple(vol_sl), tuple(voi_sl)


def extract_voi(volume: np.ndarray, centre_zyx: Sequence[float], size: int, fill: float = AIR_HU) -> np.ndarray:
    """Cut an (S, S, S) cube around ``centre_zyx`` (voxels, rounded) out of a (z, y, x) volume.

    Voxels outside the volume get ``fill`` (air). The VOI keeps the volume's dtype.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    out = np.full((size,) * 3, fill, dtype=volume.dtype)
    vol_sl, voi_sl = voi_slices(volume.shape, centre_zyx, size)
    out[voi_sl] = volume[vol_sl]
    return out


def ellipsoid_mask(
    size: int | Sequence[int], radius_zyx: Sequence[float], centre_zyx: Sequence[float] | None = None
) -> np.ndarray:
    """Bool ellipsoid with semi-axes ``radius_zyx`` (voxels).

    Args:
        size: S for an (S, S, S) VOI, or a (z, y, x) shape.
        radius_zyx: semi-axes in voxels.
        centre_zyx: centre in voxels (default: the VOI centre ``S // 2`` per axis).
    """
    shape = (int(size),) * 3 if isinstance(size, int | np.integer) else tuple(int(v) for v in size)
    c = [n // 2 for n in shape] if centre_zyx is None else [float(v) for v in centre_zyx]
    grids = np.ogrid[: shape[0], : shape[1], : shape[2]]
    acc = np.zeros(shape, dtype=np.float64)
    for g, cc, r in zip(grids, c, radius_zyx, strict=True):
        acc = acc + ((g - cc) / max(float(r), 1e-6)) ** 2
    return acc <= 1.0


def mask_radius_vox(
    diameter_mm: float, spacing_zyx: Sequence[float], mask_scale: float, mask_margin_vox: float
) -> tuple[float, float, float]:
    """Per-axis radius (voxels) of the mask sphere around a nodule of ``diameter_mm``."""
    return tuple(  # type: ignore[return-value]
        mask_scale * 0.5 * diameter_mm / float(s) + mask_margin_vox for s in spacing_zyx
    )


def random_lung_points(
    lung: np.ndarray,
    rng: np.random.Generator,
    n: int,
    min_depth_mm: float = 0.0,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` random voxel centres inside ``lung`` at least ``min_depth_mm`` from its wall.

    Args:
        lung: bool (z, y, x) lung mask.
        rng: numpy Generator.
        n: how many points (drawn with replacement).
        min_depth_mm: the Euclidean distance (mm, per-axis spacing) to the nearest non-lung voxel
            must exceed this.
        spacing_zyx: voxel spacing.
        exclude: optional bool (z, y, x) mask of voxels not allowed.

    Returns:
        (k, 3) int array of (z, y, x) voxels, k = n, or k = 0 when no voxel qualifies.
    """
    allowed = np.asarray(lung, dtype=bool)
    if min_depth_mm > 0:
        allowed = ndi.distance_transform_edt(allowed, sampling=tuple(float(s) for s in spacing_zyx)) > min_depth_mm
    if exclude is not None:
        allowed = allowed & ~exclude
    idx = np.flatnonzero(allowed)
    if idx.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    pick = rng.choice(idx, size=int(n), replace=True)
    return np.stack(np.unravel_index(pick, allowed.shape), axis=1).astype(np.int64)
