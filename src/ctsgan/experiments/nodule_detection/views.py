"""What the classifier sees of a scan: the whole cube or a VOI around a candidate (one function per view)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT, hu_to_unit
from ctsgan.experiments.nodule_detection.config import DetectionConfig, InputView, ViewFn


def hu_to_classifier_input(
    hu: np.ndarray, size: int, hu_window: tuple[float, float] = (HU_MIN_DEFAULT, HU_MAX_DEFAULT)
) -> np.ndarray:
    """HU volume (z, y, x) -> float32 (1, size, size, size) in [0, 1].

    The HU window ``hu_window`` = (lo, hi) maps linearly onto [0, 1] (clipped), then the volume is
    resampled to size^3: area averaging when every axis shrinks, trilinear otherwise.
    """
    if hu.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
    unit = (np.asarray(hu_to_unit(np.asarray(hu), *hu_window)) + 1.0) * 0.5  # [0, 1]
    t = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))[None, None]  # (1, 1, z, y, x)
    if tuple(t.shape[2:]) != (size,) * 3:
        if min(t.shape[2:]) >= size:
            t = torch.nn.functional.interpolate(t, size=(size,) * 3, mode="area")
        else:
            t = torch.nn.functional.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)
    return t[0].clamp(0.0, 1.0).numpy()  # (1, size, size, size)


_LUNG_CACHE: dict[bytes, np.ndarray] = {}
_LUNG_CACHE_MAX = 1024


def cached_lung_mask(hu: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """:func:`ctsgan.nodules.lung_mask.lung_mask`, memoised on the volume's bytes and spacing.

    The grid rebuilds the same scans for every (size, seed); their lung masks do not change.
    """
    import hashlib

    from ctsgan.nodules.lung_mask import lung_mask

    arr = np.ascontiguousarray(hu)
    key = hashlib.sha1(
        arr.tobytes() + repr((arr.shape, str(arr.dtype), tuple(spacing_zyx))).encode()
    ).digest()
    if key not in _LUNG_CACHE:
        if len(_LUNG_CACHE) >= _LUNG_CACHE_MAX:
            _LUNG_CACHE.pop(next(iter(_LUNG_CACHE)))
        _LUNG_CACHE[key] = lung_mask(arr, spacing_zyx)
    return _LUNG_CACHE[key]


def lung_candidate(
    hu: np.ndarray, spacing_zyx: Sequence[float], rng: np.random.Generator, min_depth_mm: float
) -> tuple[float, float, float]:
    """A random lung voxel at least ``min_depth_mm`` from the lung wall (the injector's placement rule).

    Falls back to the deepest lung voxel, then to the volume centre when there is no lung.
    """
    from ctsgan.nodules.paste import lung_depth_mm

    depth = lung_depth_mm(cached_lung_mask(hu, spacing_zyx), spacing_zyx)
    cand = np.argwhere(depth > min_depth_mm)
    if len(cand):
        return tuple(float(v) for v in cand[rng.integers(len(cand))])  # type: ignore[return-value]
    if depth.max() > 0:
        return tuple(float(v) for v in np.unravel_index(int(np.argmax(depth)), hu.shape))  # type: ignore[return-value]
    return tuple(s / 2.0 for s in hu.shape)  # type: ignore[return-value]


def voi_classifier_input(
    hu: np.ndarray,
    centre_zyx: Sequence[float],
    size: int,
    rng: np.random.Generator,
    jitter: int = 4,
    hu_window: tuple[float, float] = (HU_MIN_DEFAULT, HU_MAX_DEFAULT),
) -> np.ndarray:
    """An (1, size, size, size) float32 cube in [0, 1] around ``centre_zyx`` shifted by up to +-jitter voxels.

    Voxels outside the scan are air (:func:`ctsgan.nodules.voi.extract_voi`).
    """
    from ctsgan.nodules.voi import extract_voi

    shift = rng.integers(-jitter, jitter + 1, size=3) if jitter > 0 else np.zeros(3, dtype=int)
    centre = [float(c) + float(d) for c, d in zip(centre_zyx, shift, strict=True)]
    voi = extract_voi(np.asarray(hu), centre, size)
    return hu_to_classifier_input(voi, size, hu_window)


def make_view(cfg: DetectionConfig, diameter_mm: float) -> ViewFn:
    """The classifier-input view of ``cfg`` (clean scans' VOIs sit at lung points deeper than the radius)."""
    if cfg.view is InputView.VOLUME:

        def volume_view(
            hu: np.ndarray,
            spacing: tuple[float, float, float],
            centre: tuple[float, float, float] | None,
            rng: np.random.Generator,
        ) -> np.ndarray:
            return hu_to_classifier_input(hu, cfg.input_size, cfg.hu_window)

        return volume_view

    def voi_view(
        hu: np.ndarray,
        spacing: tuple[float, float, float],
        centre: tuple[float, float, float] | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        c = centre if centre is not None else lung_candidate(hu, spacing, rng, diameter_mm / 2.0)
        return voi_classifier_input(hu, c, cfg.input_size, rng, cfg.voi_jitter, cfg.hu_window)

    return voi_view


