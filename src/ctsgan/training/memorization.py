"""Memorization rejection for a handful of training scans (Bai et al. 2022, "Reducing training
sample memorization in GANs by training with memorization rejection", arXiv 2210.12231).

A generated slab closer to the same slab of some training volume than any two training volumes
are to each other there is a near-copy: G's adversarial loss leaves it out (the paper's
rejection), and an optional hinge pushes it away (``repel``). Distances are mean absolute
differences in the model's [-1, 1] units on slabs averaged 2 x 2 in-plane, the per-slab form of
the release guard's 32^3-cube distance (``generation/guard.py``); the threshold of each slab start
is the training scans' closest pair there, so it comes from the training data alone.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


def pool_inplane(x: torch.Tensor) -> torch.Tensor:
    """(..., D, S, S) -> (..., D, S/2, S/2): 2 x 2 in-plane means (odd edges dropped)."""
    lead = x.shape[:-2]
    y = F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), 2)
    return y.reshape(*lead, *y.shape[-2:])


def closest_pair_thresholds(volumes: torch.Tensor, depth: int) -> torch.Tensor:
    """Per slab start k0, the smallest distance between two training volumes' slabs there.

    Args:
        volumes: (V, L + 2, R, R) pooled training volumes, V >= 2 (slices along dim 1).
        depth: slab depth T; the slab at k0 is slices k0 + 1 .. k0 + T.

    Returns:
        (L - T + 1,) thresholds, one per slab start.
    """
    n_vol, n_slices = volumes.shape[:2]
    if n_vol < 2:
        raise ValueError(f"memorization rejection compares training volumes with each other: needs >= 2, got {n_vol}")
    starts = n_slices - 2 - depth + 1
    out = torch.full((starts,), float("inf"))
    for a, b in itertools.combinations(range(n_vol), 2):
        per_slice = (volumes[a] - volumes[b]).abs().mean(dim=(-2, -1))  # (L + 2,)
        windows = per_slice[1 : n_slices - 1].unfold(0, depth, 1).mean(-1)  # (starts,): slab k0 = slices k0+1 .. k0+T
        out = torch.minimum(out, windows)
    return out


def nearest_slab_distance(fake: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each generated slab's distance to its nearest training slab at the same position.

    Args:
        fake: (B, T, S, S) generated slabs.
        reference: (B, V, T, S/2, S/2) the V training volumes' pooled slabs at each row's position.

    Returns:
        (B,) mean absolute difference to the closest of the V (differentiable in ``fake``).
    """
    d = (pool_inplane(fake)[:, None] - reference).abs().flatten(2).mean(-1)  # (B, V)
    return d.min(dim=1).values


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B,) over rows where ``keep`` (B,) is true; 0 (with the graph) when none is."""
    w = keep.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1.0)
