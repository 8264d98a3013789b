"""Paste-back: blend a generated VOI into the volume with a smooth ramp around the mask.

The blend weight is 1 inside the mask sphere and falls off with a half-cosine over ``blend_vox``
voxels (Euclidean distance to the mask) outside it; beyond that the volume is left exactly as it
was. Values go back as int16 HU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from ctsgan.nodules.voi import voi_slices

__all__ = ["blend_weight", "lung_depth_mm", "paste_voi", "placement_mask"]


def blend_weight(mask: np.ndarray, blend_vox: float) -> np.ndarray:
    """Blend weights for an (S, S, S) bool mask: 1 inside, half-cosine ramp to 0 over ``blend_vox``.

    Returns:
        float32 (S, S, S) in [0, 1]; exactly 0 where the distance to the mask is >= ``blend_vox``.
    """
    mask = np.asarray(mask, dtype=bool)
    if blend_vox <= 0:
        return mask.astype(np.float32)
    dist = ndi.distance_transform_edt(~mask)
    w = np.where(dist < blend_vox, 0.5 * (1.0 + np.cos(np.pi * dist / blend_vox)), 0.0)
    w[mask] = 1.0
    return w.astype(np.float32)


def paste_voi(volume: np.ndarray, voi: np.ndarray, centre_zyx: Sequence[float], weight: np.ndarray) -> np.ndarray:
    """Blend ``voi`` into a copy of ``volume`` around ``centre_zyx``: ``w * voi + (1 - w) * volume``.

    Args:
        volume: (z, y, x) HU volume (int16).
        voi: (S, S, S) HU VOI (any numeric dtype).
        centre_zyx: VOI centre in volume voxels (rounded, as in :func:`extract_voi`).
        weight: (S, S, S) blend weights in [0, 1] (:func:`blend_weight`).

    Returns:
        the new volume, same dtype as ``volume``; voxels with weight 0 are bit-identical.
    """
    if voi.shape != weight.shape or voi.ndim != 3:
        raise ValueError(f"voi and weight must be the same (S, S, S) shape, got {voi.shape} and {weight.shape}")
    out = volume.copy()
    vol_sl, voi_sl = voi_slices(volume.shape, centre_zyx, voi.shape[0])
    w = weight[voi_sl]
    region = out[vol_sl].astype(np.float32)
    mixed = w * voi[voi_sl].astype(np.float32) + (1.0 - w) * region
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        mixed = np.clip(np.rint(mixed), info.min, info.max)
    new = mixed.astype(out.dtype)
    keep = w <= 0
    new[keep] = out[vol_sl][keep]
    out[vol_sl] = new
    return out


def placement_mask(lung: np.ndarray, radius_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Voxels where a nodule of ``radius_mm`` fits inside the lung, away from its wall by the radius.

    Uses the Euclidean distance transform of the lung mask with the voxel spacing (mm).
    Returns bool (z, y, x).
    """
    return lung_depth_mm(lung, spacing_zyx) > radius_mm


def lung_depth_mm(lung: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Distance (mm) of each lung voxel to the nearest non-lung voxel (0 outside). float (z, y, x)."""
    lung = np.asarray(lung, dtype=bool)
    if not lung.any():
        return np.zeros(lung.shape, dtype=np.float64)
    return ndi.distance_transform_edt(lung, sampling=tuple(float(s) for s in spacing_zyx))
