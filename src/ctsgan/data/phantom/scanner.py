"""The scanner: partial volume (block averaging to the output grid), blur, correlated noise.

Applied to the noise-free anatomy of :mod:`.anatomy`. The point-spread function is a Gaussian
of ``blur_mm`` (sigma) in every axis; the noise is white Gaussian noise filtered in-plane (a CT
reconstruction kernel correlates noise within a slice), rescaled to ``noise_hu`` std.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HU_CLIP = (-1024.0, 3071.0)


def block_mean(vol: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``^3 blocks of a (z, y, x) array (shape divisible by ``factor``)."""
    if factor == 1:
        return vol
    nz, ny, nx = (n // factor for n in vol.shape)
    return vol.reshape(nz, factor, ny, factor, nx, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def scanner_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float], std_hu: float, corr_mm: float
) -> np.ndarray:
    """Float32 (z, y, x) noise of std ``std_hu``, correlated in-plane over ``corr_mm`` (sigma, mm)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sig = (0.0, corr_mm / spacing[1], corr_mm / spacing[2])
    if sig[1] >= 0.25:
        noise = ndimage.gaussian_filter(noise, sig, mode="wrap")
    noise *= np.float32(std_hu / (noise.std() + 1e-6))
    return noise


def blur(vol: np.ndarray, spacing: tuple[float, float, float], sigma_mm: float) -> np.ndarray:
    """Gaussian PSF of ``sigma_mm`` (skipped along axes where it is under a quarter voxel)."""
    sig = tuple(sigma_mm / s if sigma_mm / s >= 0.25 else 0.0 for s in spacing)
    if not any(sig):
        return vol
    return ndimage.gaussian_filter(vol, sig, mode="nearest")


def to_hu_int16(vol: np.ndarray) -> np.ndarray:
    """Round and clip float HU to int16 in [-1024, 3071]."""
    return np.rint(np.clip(vol, *HU_CLIP)).astype(np.int16)
