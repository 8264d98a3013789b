"""Branching trees (pulmonary vessels, bronchi) that fill a lung.

A tree grows from a root (the hilum) towards ``n`` target points drawn uniformly inside the lung:
the set of targets is split in two along its principal axis, each half gets a branch point part
of the way towards its centroid, and so on until one target is left (the terminal branch ends on
it). Radii follow Murray's law, r^3 proportional to the number of terminals a branch feeds, so
the tree tapers from ``root_radius`` to about ``root_radius * n^(-1/3)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """A tube from p0 to p1 ((z, y, x) mm) with radii r0 -> r1 (mm); ``generation`` 0 = root."""

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float
    generation: int


def grow_tree(
    rng: np.random.Generator,
    root: np.ndarray,
    targets: np.ndarray,
    root_radius: float,
    step: float = 0.55,
) -> list[Segment]:
    """Grow a branching tree from ``root`` ((3,) mm) to ``targets`` ((n, 3) mm).

    Args:
        rng: randomness for the branch-point jitter.
        root: (3,) (z, y, x) start point in mm.
        targets: (n, 3) end points in mm; every one becomes a terminal branch.
        root_radius: radius (mm) of the first segment.
        step: how far (fraction) each branch point goes towards its group's centroid.

    Returns:
        The segments, parents before children.
    """
    n_total = len(targets)
    segments: list[Segment] = []
    # iterative (stack) to avoid deep recursion: (start point, targets, radius at start, generation)
    stack: list[tuple[np.ndarray, np.ndarray, float, int]] = [(np.asarray(root, np.float64), targets, root_radius, 0)]
    while stack:
        p, tg, r, gen = stack.pop()
        if len(tg) == 1:
            r_end = root_radius * (1.0 / n_total) ** (1.0 / 3.0)
            segments.append(Segment(p, tg[0], r, r_end, gen))
            continue
        rel = tg - tg.mean(axis=0)
        # principal axis of the group: split it there (with a random tilt so trees differ)
        _, _, vt = np.linalg.svd(rel, full_matrices=False)
        axis = vt[0] + rng.normal(0.0, 0.25, 3)
        proj = rel @ axis
        order = np.argsort(proj)
        half = len(tg) // 2 + int(rng.integers(-len(tg) // 6, len(tg) // 6 + 1)) if len(tg) > 5 else len(tg) // 2
        half = int(np.clip(half, 1, len(tg) - 1))
        for grp in (tg[order[:half]], tg[order[half:]]):
            c = grp.mean(axis=0)
            q = p + (c - p) * (step + rng.uniform(-0.1, 0.1))
            r_child = root_radius * (len(grp) / n_total) ** (1.0 / 3.0)
            segments.append(Segment(p, q, r, r_child, gen))
            stack.append((q, grp, r_child, gen + 1))
    return segments
