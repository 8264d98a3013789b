"""The geometry step of ``prepare``: HU clean-up, body / lung crop, resample to an (S, S, S) cube.

What :func:`make_cube` does, in order (volumes are (z, y, x), spacing (z, y, x) mm):

1. **Padding to air.** HU below -1024 (scanner padding -2048, -3024, ...) becomes -1024.
2. **Body.** Voxels above -500 HU, holes filled slice by slice
   (``scipy.ndimage.binary_fill_holes``, so the lungs count as body), then the largest 3D
   connected component after a per-slice binary opening with a 4 mm disc, which cuts thin
   attachments: the scanner table, cables and other objects fall away (:func:`body_mask`).
3. **Lung z-extent.** Voxels below -400 HU inside the (filled) body are the lungs and
   airways (and bowel gas); 3D components at least 20 % the size of the largest are kept; the
   slices where they cover at least 2 % of their largest slice area (so the trachea alone does
   not count) give the lung z-extent. Widened by ``LUNG_MARGIN_MM`` on each side, it limits z,
   so a scan longer than the chest (neck, abdomen) is cut to the chest. A partial slab with
   lung everywhere keeps all its slices; a scan without lung keeps the body's z-extent.
4. **Crop box.** z: the body's slices within the lung extent. y/x: the body's bounding box
   over those slices plus ``BOX_MARGIN_VOX`` voxels, widened to a square in millimetres around
   its centre so the in-plane aspect ratio is kept (y and x get the same spacing). A box that
   reaches past the image is padded with air (-1024): ``crop_start`` may be negative and
   ``crop_start + crop_shape`` may exceed the image.
5. **Resample.** Per-axis ``scale = crop_shape / S`` (original voxels per cube voxel). Where
   ``scale > 1`` (shrinking) a Gaussian of sigma ``(scale - 1) / 2`` voxels is applied first
   against aliasing (scikit-image's ``resize`` rule); then trilinear interpolation
   (``scipy.ndimage.affine_transform``, order 1) at the cube voxel centres with the half-voxel
   convention: cube voxel ``i`` covers original voxels ``[crop_start + i * scale,
   crop_start + (i + 1) * scale)``, i.e. original index ``o`` and cube index ``c`` relate by
   ``c = (o + 0.5 - crop_start) / scale - 0.5`` (:func:`orig_to_cube`).
6. **int16.** Rounded to the nearest HU, clipped to [-1024, 32767].

The cube spacing is ``orig_spacing * scale``: y and x share it, z has its own (a 40 mm slab
resized to S slices gets thin slices; a 300 mm chest gets thick ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AIR_HU = -1024
BODY_HU = -500.0
BODY_OPENING_MM = 4.0
LUNG_HU = -400.0
LUNG_MARGIN_MM = 10.0
LUNG_MIN_FRACTION = 0.2
LUNG_SLICE_FRACTION = 0.02
BOX_MARGIN_VOX = 2
MIN_SIZE = 16


@dataclass(frozen=True)
class CubeGeometry:
    """Where the cube comes from: all tuples (z, y, x); spacings mm; scale = crop_shape / size."""

    orig_shape: tuple[int, int, int]
    orig_spacing: tuple[float, float, float]
    crop_start: tuple[int, int, int]
    crop_shape: tuple[int, int, int]
    scale: tuple[float, float, float]
    spacing: tuple[float, float, float]
    size: int


def clip_padding(hu: np.ndarray) -> np.ndarray:
    """HU below -1024 (scanner padding) -> -1024, as float32 (any shape)."""
    return np.maximum(hu.astype(np.float32, copy=False), np.float32(AIR_HU))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = mask.copy()
    for z in range(out.shape[0]):
        if out[z].any():
            out[z] = ndimage.binary_fill_holes(out[z])
    return out


def body_mask(hu: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Body of a (z, y, x) HU volume: voxels above -500 HU, holes filled per slice, the largest
    connected component without thin attachments.

    Steps: threshold; fill holes slice by slice (the lungs become body); a per-slice binary
    opening with a disc of radius ``BODY_OPENING_MM`` removes thin structures (the scanner
    table's shell, cables, a strut touching the patient); the largest 3D component of that is
    the patient; the filled mask within 1 voxel of it is the body. Large
    slices are processed at half resolution in-plane (the mask only bounds the crop).

    Args:
        hu: (z, y, x) HU; spacing_zyx: (z, y, x) mm.

    Returns:
        bool (z, y, x).
    """
    from scipy import ndimage

    d, h, w = hu.shape
    f = 2 if min(h, w) >= 256 else 1
    filled = _fill_slices(hu[:, ::f, ::f] > BODY_HU)
    r = max(1, int(np.ceil(BODY_OPENING_MM / (max(float(spacing_zyx[1]), float(spacing_zyx[2])) * f))))

    def disc(radius: int) -> np.ndarray:
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        return (yy**2 + xx**2 <= radius * radius)[None]

    opened = ndimage.binary_opening(filled, structure=disc(r))
    core = _largest_component(opened if opened.any() else filled)
    body = filled & ndimage.binary_dilation(core, structure=disc(1))
    if f > 1:
        body = np.repeat(np.repeat(body, f, axis=1), f, axis=2)[:, :h, :w]
    return body


def lung_z_extent(hu: np.ndarray, body: np.ndarray, spacing_z: float) -> tuple[int, int] | None:
    """Slices [z0, z1) holding lung (air inside the body), widened by ``LUNG_MARGIN_MM``.

    Args:
        hu: (z, y, x) HU; body: bool (z, y, x) from :func:`body_mask`; spacing_z in mm.

    Returns:
        (z0, z1) or None when the volume has no lung.
    """
    from scipy import ndimage

    air = body & (hu < LUNG_HU)
    labels, n = ndimage.label(air)
    if n == 0:
        return None
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    if counts.max() * 1000 < body.sum():  # less than 0.1 % of the body: no lung worth the name
        return None
    keep = np.flatnonzero(counts >= LUNG_MIN_FRACTION * counts.max())
    area = np.isin(labels, keep).sum(axis=(1, 2))
    zs = np.flatnonzero(area >= LUNG_SLICE_FRACTION * area.max())  # not the trachea alone
    margin = int(np.ceil(LUNG_MARGIN_MM / spacing_z))
    return max(0, int(zs[0]) - margin), min(hu.shape[0], int(zs[-1]) + 1 + margin)


def crop_box(
    hu: np.ndarray, spacing_zyx: Sequence[float]
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Crop box (start, shape) of steps 2-4 of the module doc for a (z, y, x) HU volume."""
    d, h, w = hu.shape
    body = body_mask(hu, spacing_zyx)
    if not body.any():
        return (0, 0, 0), (d, h, w)
    zs = np.flatnonzero(body.any(axis=(1, 2)))
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    lung = lung_z_extent(hu, body, float(spacing_zyx[0]))
    if lung is not None:
        z0, z1 = max(z0, lung[0]), min(z1, lung[1])
        if z1 <= z0:
            z0, z1 = int(zs[0]), int(zs[-1]) + 1
    sub = body[z0:z1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    y0, y1 = int(ys[0]) - BOX_MARGIN_VOX, int(ys[-1]) + 1 + BOX_MARGIN_VOX
    x0, x1 = int(xs[0]) - BOX_MARGIN_VOX, int(xs[-1]) + 1 + BOX_MARGIN_VOX
    sy, sx = float(spacing_zyx[1]), float(spacing_zyx[2])
    side_mm = max((y1 - y0) * sy, (x1 - x0) * sx)
    hy, wx = round(side_mm / sy), round(side_mm / sx)
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    ys0, xs0 = int(np.floor(cy - hy / 2.0 + 0.5)), int(np.floor(cx - wx / 2.0 + 0.5))
    return (z0, ys0, xs0), (z1 - z0, hy, wx)


def resample_box(
    hu: np.ndarray, crop_start: Sequence[int], crop_shape: Sequence[int], size: int
) -> np.ndarray:
    """Resample the box of a (z, y, x) HU volume to a float32 (size, size, size) cube (step 5).

    Outside the image the box is air (-1024).
    """
    from scipy import ndimage

    start = np.asarray(crop_start, dtype=np.float64)
    scale = np.asarray(crop_shape, dtype=np.float64) / float(size)
    sigma = np.maximum(0.0, (scale - 1.0) / 2.0)
    # the part of the image the cube reads (plus the filter's reach), clipped to the image
    reach = np.ceil(4.0 * sigma).astype(int) + 2
    lo = np.maximum(0, np.floor(start).astype(int) - reach)
    hi = np.minimum(hu.shape, np.ceil(start + np.asarray(crop_shape)).astype(int) + reach)
    if np.any(hi <= lo):  # the box misses the image
        return np.full((size,) * 3, AIR_HU, dtype=np.float32)
    sub = np.ascontiguousarray(hu[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
    if np.any(sigma > 0):
        sub = ndimage.gaussian_filter(sub, sigma=tuple(sigma), mode="nearest")
    offset = start - lo + 0.5 * scale - 0.5  # cube index c -> sub index c * scale + offset
    out = ndimage.affine_transform(
        sub, scale, offset=offset, output_shape=(size,) * 3, order=1, mode="nearest", prefilter=False
    )
    # air where the sample point lies outside the image
    for axis in range(3):
        coord = np.arange(size) * scale[axis] + start[axis] + 0.5 * scale[axis] - 0.5
        outside = (coord < -0.5) | (coord > hu.shape[axis] - 0.5)
        if outside.any():
            idx: list[slice | np.ndarray] = [slice(None)] * 3
            idx[axis] = outside
            out[tuple(idx)] = AIR_HU
    return out


def make_cube(hu: np.ndarray, spacing_zyx: Sequence[float], size: int) -> tuple[np.ndarray, CubeGeometry]:
    """The whole geometry step (module doc): (z, y, x) HU -> int16 (size, size, size) cube.

    Args:
        hu: (z, y, x) HU volume (any numeric dtype), z head to feet.
        spacing_zyx: voxel spacing (z, y, x) mm.
        size: cube edge S (>= 16).

    Returns:
        (cube int16 (S, S, S), geometry).
    """
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    if hu.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
    vol = clip_padding(hu)
    start, shape = crop_box(vol, spacing_zyx)
    cube = resample_box(vol, start, shape, size)
    cube = np.clip(np.rint(cube), AIR_HU, np.iinfo(np.int16).max).astype(np.int16)
    scale = tuple(float(s) / size for s in shape)
    geom = CubeGeometry(
        orig_shape=tuple(int(s) for s in hu.shape),  # type: ignore[arg-type]
        orig_spacing=tuple(float(s) for s in spacing_zyx),  # type: ignore[arg-type]
        crop_start=tuple(int(s) for s in start),  # type: ignore[arg-type]
        crop_shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        scale=scale,  # type: ignore[arg-type]
        spacing=tuple(float(sp) * sc for sp, sc in zip(spacing_zyx, scale, strict=True)),  # type: ignore[arg-type]
        size=size,
    )
    return cube, geom


def orig_to_cube(
    index_zyx: Sequence[float], crop_start: Sequence[float], scale: Sequence[float]
) -> tuple[float, float, float]:
    """Continuous original voxel index (z, y, x) -> continuous cube voxel index (voxel centres at integers)."""
    return tuple(  # type: ignore[return-value]
        (float(o) + 0.5 - float(s)) / float(k) - 0.5 for o, s, k in zip(index_zyx, crop_start, scale, strict=True)
    )


def cube_to_orig(
    index_zyx: Sequence[float], crop_start: Sequence[float], scale: Sequence[float]
) -> tuple[float, float, float]:
    """Inverse of :func:`orig_to_cube`."""
    return tuple(  # type: ignore[return-value]
        (float(c) + 0.5) * float(k) + float(s) - 0.5 for c, s, k in zip(index_zyx, crop_start, scale, strict=True)
    )
