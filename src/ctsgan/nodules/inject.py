"""Put nodules into whole volumes with a trained injector.

Placement: inside the lung mask, at least the nodule radius (mm) from the lung wall (distance
transform), and not overlapping nodules placed before or already there (centres at least
r1 + r2 + 2 mm apart).
Count: fixed (``count``) or drawn from the LIDC nodules-per-scan distribution; diameters: fixed
(``diameters_mm``) or drawn from the LIDC nodule diameter distribution, capped so the mask fits
the injector's VOI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ctsgan.data.dataset import NoduleSpec
from ctsgan.nodules.inpainter import Inpainter, InpainterKind
from ctsgan.nodules.lidc_stats import LidcStats, load_lidc_stats
from ctsgan.nodules.paste import blend_weight, lung_depth_mm, paste_voi
from ctsgan.nodules.voi import ellipsoid_mask, extract_voi

__all__ = ["inject_nodules"]

log = logging.getLogger(__name__)



def _diameters(
    diameters_mm: float | Sequence[float] | None, count: int | None, rng: np.random.Generator, stats: LidcStats | None
) -> list[float]:
    if isinstance(diameters_mm, int | float):
        n = count if count is not None else (stats or load_lidc_stats()).sample_count(rng)
        return [float(diameters_mm)] * int(n)
    if diameters_mm is not None:
        d = [float(v) for v in diameters_mm]
        if count is not None and count != len(d):
            raise ValueError(f"count={count} but {len(d)} diameters were given")
        return d
    st = stats or load_lidc_stats()
    n = count if count is not None else st.sample_count(rng)
    return [float(v) for v in st.sample_diameters_mm(rng, int(n))]


def inject_nodules(
    hu: np.ndarray,
    lung_mask: np.ndarray,
    inpainter: Inpainter,
    spacing_zyx: Sequence[float],
    rng: np.random.Generator,
    diameters_mm: float | Sequence[float] | None = None,
    count: int | None = None,
    *,
    stats: LidcStats | None = None,
    avoid: Sequence[tuple[Sequence[float], float]] = (),
) -> tuple[np.ndarray, list[NoduleSpec]]:
    """Inject nodules into one volume.

    Args:
        hu: int16 HU volume (z, y, x).
        lung_mask: bool (z, y, x) lung mask (:func:`ctsgan.nodules.lung_mask.lung_mask`).
        inpainter: a trained injector (:func:`ctsgan.nodules.inpainter.load_inpainter`).
        spacing_zyx: voxel spacing (z, y, x) mm.
        rng: numpy Generator (placement and sampling).
        diameters_mm: one diameter for all, one per nodule, or None (LIDC distribution).
        count: number of nodules, or None (LIDC distribution; len(diameters_mm) if a list).
        stats: LIDC statistics to sample from (default: :func:`load_lidc_stats`).
        avoid: nodules already in the volume, (centre (z, y, x) voxels, diameter mm); new ones keep
            clear of them like of each other.

    Returns:
        (new int16 volume (z, y, x), [(centre (z, y, x) voxels, diameter mm), ...] of the nodules
        actually placed; a nodule with no valid place left is skipped with a warning).
    """
    if inpainter.kind != InpainterKind.INJECTOR:
        raise ValueError(f"inject_nodules needs an injector checkpoint, got a {inpainter.kind.value}")
    if hu.ndim != 3 or lung_mask.shape != hu.shape:
        raise ValueError(f"hu and lung_mask must be the same (z, y, x) shape, got {hu.shape} and {lung_mask.shape}")
    cfg = inpainter.config
    max_d_mm = cfg.max_diameter_vox() * min(float(s) for s in spacing_zyx)
    wanted = _diameters(diameters_mm, count, rng, stats)
    out = np.asarray(hu).copy()
    placed: list[NoduleSpec] = []
    depth = lung_depth_mm(lung_mask, spacing_zyx)
    existing: list[NoduleSpec] = [((float(c[0]), float(c[1]), float(c[2])), float(dd)) for c, dd in avoid]
    for d in wanted:
        if d > max_d_mm:
            if diameters_mm is not None:
                log.warning("diameter %.1f mm does not fit a %d^3 VOI; using %.1f mm", d, cfg.voi_size, max_d_mm)
            d = max_d_mm
        allowed = (depth > 0.5 * d) & ~_near(hu.shape, existing + placed, d, spacing_zyx)
        idx = np.flatnonzero(allowed)
        if idx.size == 0:
            log.warning("no place left in the lungs for a %.1f mm nodule; skipped", d)
            continue
        centre = tuple(float(v) for v in np.unravel_index(int(rng.choice(idx)), hu.shape))
        _, mask = inpainter.masks(d, spacing_zyx)
        voi = extract_voi(out, centre, cfg.voi_size)
        gen = inpainter(voi[None], mask[None])[0]
        out = paste_voi(out, gen, centre, blend_weight(mask, cfg.blend_vox))
        placed.append(((centre[0], centre[1], centre[2]), float(d)))
    return out, placed


def _near(shape: Sequence[int], placed: list[NoduleSpec], d_new: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Voxels closer than r_new + r_i + 2 mm to any placed nodule centre. bool (z, y, x)."""
    near = np.zeros(tuple(shape), dtype=bool)
    for centre, d in placed:
        r = [(0.5 * d_new + 0.5 * d + 2.0) / float(s) for s in spacing_zyx]
        near |= ellipsoid_mask(shape, r, centre)
    return near
