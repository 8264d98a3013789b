"""Lung nodules for phantoms: sizes, counts, placement inside the lungs, drawing.

Until the LIDC statistics (``ctsgan.nodules.lidc_stats``) are passed in, sizes come from
:class:`LognormalNoduleStats`: diameter ~ lognormal(median 7 mm, sigma 0.55) clipped to
[3, 30] mm (LIDC-IDRI nodules >= 3 mm have a median near 7 mm and a long tail to 30 mm), and
the count per scan is 1 + Poisson(0.8) capped at 4. Any object with the same two methods
(``sample_diameters_mm(rng, n)``, ``sample_count(rng)``), such as ``LidcStats``, can replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ctsgan.data.phantom.grid import Grid, coverage


class NoduleStats(Protocol):
    """Where nodule sizes and counts come from (``LidcStats`` fits this)."""

    def sample_diameters_mm(self, rng: np.random.Generator, n: int) -> np.ndarray: ...

    def sample_count(self, rng: np.random.Generator) -> int: ...


@dataclass(frozen=True)
class LognormalNoduleStats:
    """Parametric stand-in for the LIDC nodule size / count distribution.

    Args:
        median_mm: median diameter (lognormal scale).
        sigma: lognormal shape (std of log diameter).
        min_mm, max_mm: clip range of diameters.
        mean_extra: mean of the Poisson number of nodules beyond the first.
        max_count: cap on nodules per scan.
    """

    median_mm: float = 7.0
    sigma: float = 0.55
    min_mm: float = 3.0
    max_mm: float = 30.0
    mean_extra: float = 0.8
    max_count: int = 4

    def sample_diameters_mm(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d = rng.lognormal(np.log(self.median_mm), self.sigma, size=n)
        return np.clip(d, self.min_mm, self.max_mm)

    def sample_count(self, rng: np.random.Generator) -> int:
        return int(min(self.max_count, 1 + rng.poisson(self.mean_extra)))


def place_nodules(
    rng: np.random.Generator, lung: np.ndarray, grid: Grid, diameters_mm: np.ndarray, tries: int = 200
) -> list[tuple[np.ndarray, float]]:
    """Pick a centre (mm) for each diameter so the whole ball lies inside the lung occupancy.

    Args:
        lung: float32 (z, y, x) lung occupancy on ``grid``.
        diameters_mm: (n,) diameters.

    Returns:
        (centre (z, y, x) mm, diameter mm) for each nodule that found room (others dropped).
        Nodules do not overlap one another.
    """
    idx = np.flatnonzero(lung > 0.5)
    if idx.size == 0:
        return []
    # directions to probe the ball's surface: the 26 neighbours, normalised
    dirs = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)], float)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    sp = np.asarray(grid.spacing)
    off = np.array([0.0, grid.extent_zyx[1] / 2, grid.extent_zyx[2] / 2])
    shape = np.asarray(lung.shape)
    placed: list[tuple[np.ndarray, float]] = []
    for d in sorted(diameters_mm, reverse=True):
        r = d / 2.0
        for cand in rng.choice(idx, size=min(tries, idx.size), replace=False):
            c = (np.asarray(np.unravel_index(cand, lung.shape), float) + 0.5) * sp - off
            probe = np.vstack([c, c + dirs * (r + 1.0), c + dirs * 0.6 * r])
            vi = np.floor((probe + off) / sp).astype(int)
            if np.any(vi < 0) or np.any(vi >= shape):
                continue
            if not np.all(lung[vi[:, 0], vi[:, 1], vi[:, 2]] > 0.5):
                continue
            if any(np.linalg.norm(c - c2) < r + d2 / 2 + 2.0 for c2, d2 in placed):
                continue
            placed.append((c, float(d)))
            break
    return placed


def draw_nodule(
    hu: np.ndarray, occ_out: np.ndarray, grid: Grid, centre: np.ndarray, diameter_mm: float, rng: np.random.Generator
) -> None:
    """Paint one solid nodule (sphere, or lobulated: a union of 3-6 balls) into ``hu`` in place.

    Args:
        hu: float32 (z, y, x) HU on ``grid``.
        occ_out: float32 (z, y, x) nodule occupancy, updated with the max.
        centre: (z, y, x) mm; diameter_mm: overall diameter.
    """
    r = diameter_mm / 2.0
    w = grid.voxel_mm
    sl = grid.box(centre - r - 2 * w, centre + r + 2 * w)
    if sl is None:
        return
    z, y, x = grid.box_coords(sl)
    dist = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    sd = dist - np.float32(r)
    if rng.uniform() < 0.5:  # lobulated: balls of 0.5-0.7 r on the surface of a 0.35-0.45 r sphere
        core = np.float32(0.7 * r)
        sd = dist - core
        for _ in range(int(rng.integers(3, 7))):
            v = rng.normal(size=3)
            v /= np.linalg.norm(v)
            rl = rng.uniform(0.5, 0.65) * r
            cl = centre + v * (r - rl)
            sd = np.minimum(sd, np.sqrt((z - cl[0]) ** 2 + (y - cl[1]) ** 2 + (x - cl[2]) ** 2) - np.float32(rl))
    occ = coverage(sd, w)
    value = np.float32(rng.uniform(-10.0, 60.0))
    sub = hu[sl]
    sub += occ * (value - sub)
    np.maximum(occ_out[sl], occ, out=occ_out[sl])
