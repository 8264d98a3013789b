"""Hounsfield units <-> network range.

Networks see float32 in [-1, 1]: the HU window [lo, hi] (default [-1024, 600]) maps linearly
onto [-1, 1], values outside are clipped. Writers map back with :func:`unit_to_hu`.
"""

from __future__ import annotations

import numpy as np
import torch

HU_MIN_DEFAULT = -1024.0
HU_MAX_DEFAULT = 600.0
AIR_HU = -1024

ArrayLike = np.ndarray | torch.Tensor


def hu_to_unit(hu: ArrayLike, lo: float = HU_MIN_DEFAULT, hi: float = HU_MAX_DEFAULT) -> ArrayLike:
    """Map HU (any shape, any numeric dtype) to float32 in [-1, 1] (clipped to the window)."""
    if hi <= lo:
        raise ValueError(f"HU window must have hi > lo, got [{lo}, {hi}]")
    if isinstance(hu, torch.Tensor):
        x = hu.to(torch.float32)
        return ((x.clamp(lo, hi) - lo) / (hi - lo) * 2.0 - 1.0).to(torch.float32)
    arr = np.asarray(hu, dtype=np.float32)
    return (np.clip(arr, lo, hi) - lo) / np.float32(hi - lo) * np.float32(2.0) - np.float32(1.0)


def unit_to_hu(x: ArrayLike, lo: float = HU_MIN_DEFAULT, hi: float = HU_MAX_DEFAULT) -> np.ndarray:
    """Map network output in [-1, 1] (any shape) back to int16 HU (rounded, clipped to the window)."""
    arr = x.detach().to(torch.float32).cpu().numpy() if isinstance(x, torch.Tensor) else x
    arr = np.clip(np.asarray(arr, dtype=np.float32), -1.0, 1.0)
    hu = (arr + 1.0) * 0.5 * (hi - lo) + lo
    return np.rint(hu).astype(np.int16)
