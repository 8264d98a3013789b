"""The sampling grid of a phantom and anti-aliased drawing of tubes and balls on it.

Coordinates are millimetres in the patient frame used by the whole phantom:
``z`` runs from the top of the volume (head side, z = 0) to the feet, ``y`` from anterior
(negative) to posterior (positive), ``x`` from the patient's right (negative) to the patient's
left (positive), both centred on the field of view. This is the DICOM LPS frame with z flipped,
so a (z, y, x) array indexed this way shows the usual radiological axial view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A regular (z, y, x) grid of voxel centres covering ``extent_zyx`` mm.

    Args:
        shape: (nz, ny, nx) voxels.
        extent_zyx: physical size (z, y, x) in mm; spacing = extent / shape.
    """

    shape: tuple[int, int, int]
    extent_zyx: tuple[float, float, float]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(e / n for e, n in zip(self.extent_zyx, self.shape, strict=True))  # type: ignore[return-value]

    @property
    def voxel_mm(self) -> float:
        """Geometric-mean voxel edge (mm): the width of anti-aliased edges."""
        return float(np.prod(self.spacing) ** (1.0 / 3.0))

    def axis(self, i: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along axis ``i`` (z from 0, y and x centred)."""
        n, ext = self.shape[i], self.extent_zyx[i]
        c = (np.arange(n, dtype=np.float32) + 0.5) * np.float32(ext / n)
        return c if i == 0 else c - np.float32(ext / 2)

    def coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinate arrays z (nz,1,1), y (1,ny,1), x (1,1,nx) in mm."""
        return (
            self.axis(0)[:, None, None],
            self.axis(1)[None, :, None],
            self.axis(2)[None, None, :],
        )

    def to_index(self, p_zyx: Sequence[float] | np.ndarray) -> np.ndarray:
        """Point (z, y, x) mm -> continuous voxel index (z, y, x)."""
        sp = np.asarray(self.spacing)
        off = np.array([0.0, self.extent_zyx[1] / 2, self.extent_zyx[2] / 2])
        return (np.asarray(p_zyx, dtype=np.float64) + off) / sp - 0.5

    def box(self, lo_zyx: np.ndarray, hi_zyx: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres may lie in the mm box [lo, hi] (None if empty)."""
        a = np.floor(self.to_index(lo_zyx)).astype(int)
        b = np.ceil(self.to_index(hi_zyx)).astype(int) + 1
        a = np.maximum(a, 0)
        b = np.minimum(b, np.asarray(self.shape))
        if np.any(b <= a):
            return None
        return (slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2]))

    def box_coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates (mm) of the voxels of a box, broadcastable like :meth:`coords`."""
        return (
            self.axis(0)[sl[0]][:, None, None],
            self.axis(1)[sl[1]][None, :, None],
            self.axis(2)[sl[2]][None, None, :],
        )


def coverage(signed_dist: np.ndarray, width: float) -> np.ndarray:
    """Fraction of a voxel inside a shape from the signed distance (mm, negative inside)."""
    return np.clip(0.5 - signed_dist / np.float32(width), 0.0, 1.0).astype(np.float32)


def blend(vol: np.ndarray, sl: tuple[slice, slice, slice], occ: np.ndarray, value: float | np.ndarray) -> None:
    """In place: ``vol[sl] = vol[sl] * (1 - occ) + value * occ`` (partial-volume painting)."""
    sub = vol[sl]
    sub += occ * (np.asarray(value, dtype=np.float32) - sub)


def segment_distance(
    grid: Grid, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, margin: float
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Signed distance (mm) to a tapered tube from ``p0`` (radius r0) to ``p1`` (radius r1).

    Only the bounding box (plus ``margin`` mm) is computed. Returns (box slices, signed distance
    over the box) or None when the box misses the grid.
    """
    rmax = max(r0, r1) + margin
    lo = np.minimum(p0, p1) - rmax
    hi = np.maximum(p0, p1) + rmax
    sl = grid.box(lo, hi)
    if sl is None:
        return None
    z, y, x = grid.box_coords(sl)
    d = (p1 - p0).astype(np.float32)
    dd = float(d @ d) or 1e-6
    t = ((z - p0[0]) * d[0] + (y - p0[1]) * d[1] + (x - p0[2]) * d[2]) / np.float32(dd)
    t = np.clip(t, 0.0, 1.0)
    dist = np.sqrt((z - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (x - p0[2] - t * d[2]) ** 2)
    return sl, dist - (np.float32(r0) + t * np.float32(r1 - r0))


def paint_tube(
    vol: np.ndarray,
    grid: Grid,
    p0: Sequence[float],
    p1: Sequence[float],
    r0: float,
    r1: float,
    value: float,
    within: np.ndarray | None = None,
) -> None:
    """Paint a tapered tube of HU ``value`` into ``vol`` (z, y, x) with anti-aliased edges.

    Args:
        vol: float32 (z, y, x) HU volume on ``grid``, changed in place.
        p0, p1: end points (z, y, x) mm; r0, r1: radii (mm) at the ends.
        within: optional float32 (z, y, x) weight in [0, 1] (e.g. the lung occupancy) that
            limits where the tube shows.
    """
    w = grid.voxel_mm
    res = segment_distance(grid, np.asarray(p0, np.float32), np.asarray(p1, np.float32), r0, r1, w)
    if res is None:
        return
    sl, sd = res
    occ = coverage(sd, w)
    if within is not None:
        occ *= within[sl]
    blend(vol, sl, occ, value)
