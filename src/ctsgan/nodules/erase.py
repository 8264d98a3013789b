"""Take nodules out of whole volumes with a trained eraser."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctsgan.data.dataset import Nodule
from ctsgan.nodules.inpainter import Inpainter, InpainterKind
from ctsgan.nodules.paste import blend_weight, paste_voi
from ctsgan.nodules.voi import extract_voi

__all__ = ["erase_nodules"]


def erase_nodules(
    hu: np.ndarray,
    nodules: Sequence[tuple[Sequence[float], float] | Nodule],
    eraser: Inpainter,
    spacing_zyx: Sequence[float],
) -> np.ndarray:
    """Replace each nodule with healthy tissue painted by the eraser.

    Args:
        hu: int16 HU volume (z, y, x).
        nodules: (centre (z, y, x) voxels, diameter mm) pairs, or :class:`Nodule` rows of nodules.csv.
        eraser: a trained eraser (:func:`ctsgan.nodules.inpainter.load_inpainter`).
        spacing_zyx: voxel spacing (z, y, x) mm.

    Returns:
        the new int16 volume (z, y, x); voxels beyond each mask's blend zone are unchanged.
    """
    if eraser.kind != InpainterKind.ERASER:
        raise ValueError(f"erase_nodules needs an eraser checkpoint, got a {eraser.kind.value}")
    if hu.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
    cfg = eraser.config
    max_d_mm = cfg.max_diameter_vox() * min(float(s) for s in spacing_zyx)
    out = np.asarray(hu).copy()
    for n in nodules:
        centre: tuple[float, ...]
        if isinstance(n, Nodule):
            centre, d = (n.z, n.y, n.x), n.diameter_mm
        else:
            centre, d = tuple(float(v) for v in n[0]), float(n[1])
        # a nodule larger than the VOI allows is erased with the largest mask that fits
        d = min(float(d), max_d_mm)
        _, mask = eraser.masks(d, spacing_zyx)
        voi = extract_voi(out, centre, cfg.voi_size)
        gen = eraser(voi[None], mask[None])[0]
        out = paste_voi(out, gen, centre, blend_weight(mask, cfg.blend_vox))
    return out
