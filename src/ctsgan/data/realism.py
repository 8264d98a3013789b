"""Realism measures of a CT volume against a real reference (HU histograms inside the body).

- :func:`body_mask`: per axial slice, the largest connected region above -500 HU, holes filled
  (so the lungs and airways inside count as body; the table and air outside do not).
- :func:`tissue_fractions`: fractions of body voxels in the HU ranges of lung, soft tissue, fat
  and bone (the ranges overlap on [-100, -50): each is computed as stated).
- :func:`hu_wasserstein`: the 1-D Wasserstein (earth mover's) distance in HU between the body
  HU distributions of two volumes (``scipy.stats.wasserstein_distance`` on 1-HU histograms,
  which is exact for integer HU).
- :func:`read_reference`: a real DICOM series in HU via SimpleITK (padding clipped to -1024).

Used by the phantom tests and by training code to show that generated volumes approach the real
distribution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage, stats

BODY_THRESHOLD_HU = -500.0
HU_FLOOR = -1024
HU_CEIL = 3071

# name -> [lo, hi) in HU (hi = None: no upper bound)
TISSUE_RANGES: dict[str, tuple[float, float | None]] = {
    "lung": (-950.0, -600.0),
    "soft": (-100.0, 100.0),
    "fat": (-150.0, -50.0),
    "bone": (300.0, None),
}

# fractions of body voxels in a real whole-chest CT (issue 2; Lung-PET-CT-Dx A0001 gives
# lung 0.204, soft 0.456, fat 0.168, bone 0.039)
REAL_FRACTION_RANGES: dict[str, tuple[float, float]] = {
    "lung": (0.15, 0.25),
    "soft": (0.45, 0.55),
    "fat": (0.15, 0.30),
    "bone": (0.02, 0.04),
}


def body_mask(hu: np.ndarray, threshold: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Body mask of a (z, y, x) HU volume.

    Args:
        hu: (z, y, x) HU, any numeric dtype.
        threshold: HU above which a voxel may be body.

    Returns:
        bool (z, y, x): per axial slice, the largest 8-connected region above ``threshold``
        with its holes filled (empty slices stay empty).
    """
    if hu.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
    out = np.zeros(hu.shape, dtype=bool)
    eight = np.ones((3, 3), dtype=bool)
    for z in range(hu.shape[0]):
        lab, n = ndimage.label(np.asarray(hu[z]) > threshold, structure=eight)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        out[z] = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    return out


def _body_values(hu: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    m = body_mask(hu) if mask is None else mask
    vals = np.asarray(hu)[m]
    if vals.size == 0:
        raise ValueError("the body mask is empty (no voxel above -500 HU)")
    return np.clip(np.rint(vals), HU_FLOOR, HU_CEIL).astype(np.int64)


def tissue_fractions(hu: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Fractions of body voxels in :data:`TISSUE_RANGES` (lung, soft, fat, bone).

    Args:
        hu: (z, y, x) HU.
        mask: bool (z, y, x) body mask; default :func:`body_mask` of ``hu``.
    """
    v = _body_values(hu, mask)
    out = {}
    for name, (lo, hi) in TISSUE_RANGES.items():
        sel = v >= lo if hi is None else (v >= lo) & (v < hi)
        out[name] = float(sel.mean())
    return out


def body_histogram(hu: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Counts of body voxels per integer HU from -1024 to 3071 ((4096,) int64; values clipped)."""
    v = _body_values(hu, mask)
    return np.bincount(v - HU_FLOOR, minlength=HU_CEIL - HU_FLOOR + 1)


def hu_wasserstein(
    hu: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    *,
    hist: np.ndarray | None = None,
    reference_hist: np.ndarray | None = None,
) -> float:
    """1-D Wasserstein distance (HU) between the body HU distributions of two volumes.

    Args:
        hu, reference: (z, y, x) HU volumes (any shapes; histograms are normalised), or
        hist, reference_hist: their :func:`body_histogram` (to reuse a reference).
    """
    if hist is None:
        if hu is None:
            raise ValueError("give hu or hist")
        hist = body_histogram(hu)
    if reference_hist is None:
        if reference is None:
            raise ValueError("give reference or reference_hist")
        reference_hist = body_histogram(reference)
    centres = np.arange(HU_FLOOR, HU_CEIL + 1, dtype=np.float64)
    return float(stats.wasserstein_distance(centres, centres, hist.astype(np.float64), reference_hist.astype(np.float64)))


def realism_report(hu: np.ndarray, reference_hist: np.ndarray) -> dict[str, float]:
    """Tissue fractions of ``hu`` and its Wasserstein distance (HU) to a reference histogram."""
    mask = body_mask(hu)
    rep = tissue_fractions(hu, mask)
    rep["wasserstein_hu"] = hu_wasserstein(hist=body_histogram(hu, mask), reference_hist=reference_hist)
    return rep


def read_reference(series_dir: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a real DICOM series as HU with SimpleITK.

    Args:
        series_dir: a folder holding one DICOM series (the first series found is read).

    Returns:
        (int16 (z, y, x) HU with values below -1024 set to -1024, spacing (z, y, x) mm). The z
        order is SimpleITK's (by slice position), not necessarily head -> feet.
    """
    import SimpleITK as sitk

    series_dir = Path(series_dir)
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(series_dir))
    if not ids:
        raise ValueError(f"{series_dir}: no DICOM series found")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir), ids[0]))
    img = reader.Execute()
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr = np.clip(arr, HU_FLOOR, HU_CEIL)
    spacing = tuple(float(s) for s in reversed(img.GetSpacing()))
    return arr.astype(np.int16), spacing  # type: ignore[return-value]
