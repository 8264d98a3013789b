"""Hounsfield units <-> network range.

Networks see float32 in [-1, 1]: the HU window [lo, hi] (default [-1024, 600]) maps linearly
onto [-1, 1], values outside are clipped. Writers map back with :func:`unit_to_hu`.

Optional interior ``knots`` ((hu, unit) pairs, both increasing, inside the window and inside
(-1, 1)) make the map piecewise linear through (lo, -1), the knots and (hi, 1): e.g.
``((-200, -0.5), (200, 0.5))`` gives the soft-tissue band [-200, 200] HU half of the networks'
range (twice the linear map's share) and air-to-lung a quarter. Both directions stay exact
inverses inside the window, so HU written to disk mean what they say.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch

HU_MIN_DEFAULT = -1024.0
HU_MAX_DEFAULT = 600.0
AIR_HU = -1024

ArrayLike = np.ndarray | torch.Tensor
Knots = Sequence[tuple[float, float]]


def check_knots(lo: float, hi: float, knots: Knots) -> tuple[tuple[float, float], ...]:
    """``knots`` as float pairs, or ValueError unless strictly increasing in both HU and unit
    and strictly inside (lo, hi) and (-1, 1)."""
    if hi <= lo:
        raise ValueError(f"HU window must have hi > lo, got [{lo}, {hi}]")
    out = tuple((float(h), float(u)) for h, u in knots)
    hs = [lo] + [h for h, _ in out] + [hi]
    us = [-1.0] + [u for _, u in out] + [1.0]
    if any(b <= a for a, b in pairwise(hs)) or any(b <= a for a, b in pairwise(us)):
        raise ValueError(
            f"HU knots {list(out)} must increase strictly in HU inside the window ({lo}, {hi}) and in unit inside (-1, 1)"
        )
    return out


def _knot_points(lo: float, hi: float, knots: Knots) -> tuple[list[float], list[float]]:
    """(HU, unit) coordinates of the map's corners: the window's ends and the checked knots."""
    k = check_knots(lo, hi, knots)
    return [lo, *(h for h, _ in k), hi], [-1.0, *(u for _, u in k), 1.0]


def _piecewise(x: ArrayLike, xs: Sequence[float], ys: Sequence[float]) -> ArrayLike:
    """The increasing piecewise-linear map through (xs[i], ys[i]), clamped to [xs[0], xs[-1]]:
    ys[0] + sum_i slope_i * clip(x - xs[i], 0, xs[i+1] - xs[i]) (numpy or torch, float32)."""
    if isinstance(x, torch.Tensor):
        t = torch.full_like(x, ys[0])
        for (x0, y0), (x1, y1) in pairwise(zip(xs, ys, strict=True)):
            t = t + (x - x0).clamp(0.0, x1 - x0) * ((y1 - y0) / (x1 - x0))
        return t
    out = np.full(np.shape(x), ys[0], dtype=np.float32)
    for (x0, y0), (x1, y1) in pairwise(zip(xs, ys, strict=True)):
        out += np.clip(x - np.float32(x0), 0.0, np.float32(x1 - x0)) * np.float32((y1 - y0) / (x1 - x0))
    return out


def hu_to_unit(hu: ArrayLike, lo: float = HU_MIN_DEFAULT, hi: float = HU_MAX_DEFAULT, knots: Knots = ()) -> ArrayLike:
    """Map HU (any shape, any numeric dtype) to float32 in [-1, 1] (clipped to the window;
    piecewise linear through ``knots``, see the module docstring)."""
    if hi <= lo:
        raise ValueError(f"HU window must have hi > lo, got [{lo}, {hi}]")
    if knots:
        xs, ys = _knot_points(lo, hi, knots)
        x = hu.to(torch.float32) if isinstance(hu, torch.Tensor) else np.asarray(hu, dtype=np.float32)
        return _piecewise(x, xs, ys)
    if isinstance(hu, torch.Tensor):
        x = hu.to(torch.float32)
        return ((x.clamp(lo, hi) - lo) / (hi - lo) * 2.0 - 1.0).to(torch.float32)
    arr = np.asarray(hu, dtype=np.float32)
    return (np.clip(arr, lo, hi) - lo) / np.float32(hi - lo) * np.float32(2.0) - np.float32(1.0)


def unit_to_hu(x: ArrayLike, lo: float = HU_MIN_DEFAULT, hi: float = HU_MAX_DEFAULT, knots: Knots = ()) -> np.ndarray:
    """Map network output in [-1, 1] (any shape) back to int16 HU (rounded, clipped to the
    window; the inverse of :func:`hu_to_unit` with the same ``knots``)."""
    arr = x.detach().to(torch.float32).cpu().numpy() if isinstance(x, torch.Tensor) else x
    arr = np.clip(np.asarray(arr, dtype=np.float32), -1.0, 1.0)
    if knots:
        return np.rint(unit_to_hu_float(arr, lo, hi, knots)).astype(np.int16)
    hu = (arr + 1.0) * 0.5 * (hi - lo) + lo
    return np.rint(hu).astype(np.int16)


def unit_to_hu_float(x: ArrayLike, lo: float, hi: float, knots: Knots) -> ArrayLike:
    """float32 HU of network units ``x`` (numpy or torch, not rounded): the inverse map of
    :func:`hu_to_unit`, clamped to [-1, 1] first."""
    hus, units = _knot_points(lo, hi, knots)
    return _piecewise(x, units, hus)
