"""Lung masks from HU volumes: threshold, morphology and connected components (scipy.ndimage).

Steps (all on a (z, y, x) int16 HU volume with spacing (z, y, x) mm):

1. **Air-like voxels**: ``hu < air_threshold_hu`` (-350 HU by default: about half way between
   lung (~-850) and soft tissue (~0), so a partial-volume voxel counts when it is mostly lung).
2. **Outside air**: per axial slice, the air components touching the in-plane border (air around
   the body, under and inside the table) are removed. Partial slabs are fine: the slab's first and
   last slices are not treated as a border.
3. **Airways**: the trachea is found as a small, very dark (< ``airway_hu``) component near the
   body's left-right centre in the end slices (both ends are tried, so the head may be at either
   end) and followed slice by slice towards the other end while its area
   stays tube-like; it stops where it would merge with a lung. Those voxels (dilated by one) are
   removed, which cuts the trachea and the first part of the main bronchi.
4. **Lungs**: 3D connected components; the largest one and the second largest (when it holds at
   least ``second_lung_fraction`` of the largest) are kept; bowel gas and small pockets go.
5. **Vessels and juxta-pleural nodules**: each lung is closed in-plane with a disk of
   ``closing_radius_mm`` (a rolling ball that closes bites in the wall, such as nodules attached
   to the pleura) and its holes are filled slice by slice (vessels, nodules inside the lung).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["dice", "lung_mask"]


def _disk(radius_y: float, radius_x: float) -> np.ndarray:
    ry, rx = max(int(np.ceil(radius_y)), 1), max(int(np.ceil(radius_x)), 1)
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return (yy / max(radius_y, 1e-6)) ** 2 + (xx / max(radius_x, 1e-6)) ** 2 <= 1.0


def _remove_outside_air(air: np.ndarray) -> np.ndarray:
    """Per axial slice, drop air components that touch the in-plane border. (z, y, x) bool."""
    inside = np.zeros_like(air)
    for k in range(air.shape[0]):
        lab, n = ndi.label(air[k])
        if n == 0:
            continue
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        keep = np.ones(n + 1, dtype=bool)
        keep[border] = False
        keep[0] = False
        inside[k] = keep[lab]
    return inside


def _trace_airways(
    hu: np.ndarray,
    candidate: np.ndarray,
    spacing_zyx: Sequence[float],
    airway_hu: float,
    max_airway_area_mm2: float,
) -> np.ndarray:
    """Trachea (and the start of the main bronchi) followed from the top slice down. (z, y, x) bool."""
    _, sy, sx = (float(s) for s in spacing_zyx)
    px_area = sy * sx
    max_px = max_airway_area_mm2 / px_area
    min_px = 12.0 / px_area  # a trachea is wider than ~4 mm
    dark = candidate & (hu < airway_hu)
    airway = np.zeros_like(candidate)
    body_cols = np.nonzero(candidate.any(axis=(0, 1)))[0]
    if body_cols.size == 0:
        return airway
    mid_x = 0.5 * (body_cols[0] + body_cols[-1])
    width = body_cols[-1] - body_cols[0] + 1
    prev: np.ndarray | None = None
    for k in range(hu.shape[0]):
        lab, n = ndi.label(dark[k])
        if n == 0:
            if prev is not None:
                break
            continue
        idx = np.arange(1, n + 1)
        areas = ndi.sum_labels(np.ones_like(lab), lab, idx)
        if prev is None:
            # seed: a small component near the left-right midline; lungs at this level are absent
            # or much larger
            coms = ndi.center_of_mass(np.ones_like(lab), lab, idx)
            seeds = [
                i for i, a, c in zip(idx, areas, coms, strict=True)
                if min_px <= a <= max_px and abs(c[1] - mid_x) < 0.15 * width
            ]
            # a slice with lung-sized dark regions and no trachea seed: the trachea is above the slab
            if not seeds and areas.max() > max_px:
                break
            if seeds:
                cur = np.isin(lab, seeds)
                airway[k] = cur
                prev = cur
            continue
        overlap = np.unique(lab[prev & (lab > 0)])
        ok = [i for i in overlap if areas[i - 1] <= max_px]
        if not ok:
            break
        cur = np.isin(lab, ok)
        airway[k] = cur
        prev = cur
    return airway


def lung_mask(
    hu: np.ndarray,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    air_threshold_hu: float = -350.0,
    airway_hu: float = -950.0,
    max_airway_area_mm2: float = 600.0,
    closing_radius_mm: float = 8.0,
    second_lung_fraction: float = 0.1,
    remove_airways: bool = True,
    open_specks: bool = False,
) -> np.ndarray:
    """Binary lung mask of a chest CT.

    Args:
        hu: HU volume of shape (z, y, x) (any integer or float dtype).
        spacing_zyx: voxel spacing (z, y, x) in mm.
        air_threshold_hu: voxels below this are air-like (lung parenchyma, airways, outside air).
        airway_hu: the trachea is traced through voxels darker than this.
        max_airway_area_mm2: an airway cross-section larger than this is a lung, not a tube.
        closing_radius_mm: radius of the in-plane closing disk (bites up to ~2x this close).
        second_lung_fraction: the second-largest component is a lung when its volume is at least
            this fraction of the largest.
        remove_airways: trace and remove the trachea / main bronchi.
        open_specks: apply a 3D binary opening before labelling (off by default: at coarse
            spacing it eats thin lung tips; the size filter already drops specks).

    Returns:
        bool array of shape (z, y, x): True inside the lungs (vessels and nodules included).
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"lung_mask expects a (z, y, x) volume, got shape {hu.shape}")
    if len(spacing_zyx) != 3 or any(float(s) <= 0 for s in spacing_zyx):
        raise ValueError(f"spacing_zyx must be three positive numbers (mm), got {tuple(spacing_zyx)}")
    _, sy, sx = (float(s) for s in spacing_zyx)

    air = hu < air_threshold_hu
    candidate = _remove_outside_air(air)
    if remove_airways:
        # traced from both ends: the head end is slice 0 in prepared cubes, the last slice in
        # position-sorted DICOM series
        airway = _trace_airways(hu, candidate, spacing_zyx, airway_hu, max_airway_area_mm2)
        airway |= _trace_airways(hu[::-1], candidate[::-1], spacing_zyx, airway_hu, max_airway_area_mm2)[::-1]
        if airway.any():
            grow = ndi.generate_binary_structure(3, 1)
            candidate &= ~ndi.binary_dilation(airway, structure=grow)

    if open_specks:
        candidate = ndi.binary_opening(candidate, structure=ndi.generate_binary_structure(3, 1))
    lab, n = ndi.label(candidate)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = ndi.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1))
    order = np.argsort(sizes)[::-1]
    keep = [int(order[0]) + 1]
    if n > 1 and sizes[order[1]] >= second_lung_fraction * sizes[order[0]]:
        keep.append(int(order[1]) + 1)

    disk = _disk(closing_radius_mm / sy, closing_radius_mm / sx)
    pad = disk.shape[0]
    out = np.zeros(hu.shape, dtype=bool)
    boxes = ndi.find_objects(lab)
    for label in keep:
        box = boxes[label - 1]
        if box is None:
            continue
        comp = lab[box] == label  # work inside the component's bounding box (fast on 512^2 slices)
        for k in range(comp.shape[0]):
            if not comp[k].any():
                continue
            closed = ndi.binary_closing(np.pad(comp[k], pad), structure=disk)
            out[box][k] |= ndi.binary_fill_holes(closed)[pad:-pad, pad:-pad]
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two bool masks of the same shape (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"dice: shapes differ, {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total
