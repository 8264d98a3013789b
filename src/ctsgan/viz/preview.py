"""Tri-planar PNG previews (axial / coronal / sagittal through the centre)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctsgan.io.atomic import atomic_path


def window_to_uint8(hu: np.ndarray, lo: float = -1000.0, hi: float = 400.0) -> np.ndarray:
    """Map HU to 0..255 with a lung/mediastinum window [lo, hi]."""
    x = (np.clip(hu.astype(np.float32), lo, hi) - lo) / (hi - lo)
    return (x * 255.0 + 0.5).astype(np.uint8)


def triplanar(volume: np.ndarray, spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """(z, y, x) HU volume -> one uint8 (H, W) image: axial | coronal | sagittal mid-planes.

    Coronal and sagittal views are resized so their z axis shows at true physical scale
    relative to y/x, head at the top.
    """
    from PIL import Image

    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    d, h, w = volume.shape
    sz, sy, sx = spacing_zyx
    axial = window_to_uint8(np.asarray(volume[d // 2]))
    coronal = window_to_uint8(np.asarray(volume[:, h // 2, :]))
    sagittal = window_to_uint8(np.asarray(volume[:, :, w // 2]))
    target_h = max(h, 1)

    def fit(img: np.ndarray, phys_h: float, phys_w: float) -> np.ndarray:
        # True physical aspect, clamped to 1:4..4:1 so thin slabs do not become 7000-pixel strips.
        aspect = min(max(phys_w / max(phys_h, 1e-6), 0.25), 4.0)
        out_w = max(1, round(target_h * aspect))
        return np.asarray(Image.fromarray(img).resize((out_w, target_h), Image.Resampling.BILINEAR))

    panels = [
        fit(axial, h * sy, w * sx),
        fit(coronal, d * sz, w * sx),
        fit(sagittal, d * sz, h * sy),
    ]
    gap = np.zeros((target_h, 2), dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def save_preview(path: str | Path, volume: np.ndarray, spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """Write the tri-planar preview of a (z, y, x) HU volume as PNG, atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(triplanar(volume, spacing_zyx)).save(tmp, format="PNG")
    return path
