"""The geometry step: padding, body / lung crop, resampling and the index mapping."""

from __future__ import annotations

import numpy as np
import pytest

from ctsgan.data.geometry import (
    body_mask,
    crop_box,
    cube_to_orig,
    make_cube,
    orig_to_cube,
    resample_box,
)


def _chest(d: int = 60, h: int = 64, w: int = 80, lung_z: tuple[int, int] = (0, 60), table: bool = False) -> np.ndarray:
    """(z, y, x): air, an elliptic body (y 13..51, x 9..71), two lungs over z in lung_z, a table below."""
    zz, yy, xx = np.mgrid[:d, :h, :w]
    vol = np.full((d, h, w), -1000.0, np.float32)
    vol[((yy - 32) / 20.0) ** 2 + ((xx - 40) / 32.0) ** 2 < 1] = 40.0
    lungs = (((yy - 32) / 12.0) ** 2 + ((np.abs(xx - 40) - 14) / 9.0) ** 2 < 1) & (zz >= lung_z[0]) & (zz < lung_z[1])
    vol[lungs] = -850.0
    if table:
        vol[:, 56:58, 2:78] = 200.0  # table shell
        vol[:, 52:56, 40] = 100.0  # a 1-voxel strut touching the body
    return vol


def test_index_mapping_by_hand_and_inverse() -> None:
    # cube voxel 0 covers original voxels [10, 12): its centre is original index 10.5
    assert orig_to_cube((10.5, 0.0, 0.0), (10, -4, 0), (2.0, 0.5, 1.0)) == pytest.approx((0.0, 8.5, 0.0))
    pts = (3.25, -1.0, 17.0)
    back = cube_to_orig(orig_to_cube(pts, (1, 2, -3), (0.7, 2.5, 1.3)), (1, 2, -3), (0.7, 2.5, 1.3))
    assert back == pytest.approx(pts)


def test_resample_is_exact_on_a_linear_ramp_when_enlarging() -> None:
    zz, yy, xx = np.mgrid[:20, :30, :40].astype(np.float32)
    hu = 3 * zz + 2 * yy - xx
    start, shape, size = (2, 3, 4), (16, 16, 16), 32  # scale 0.5: no smoothing
    cube = resample_box(hu, start, shape, size)
    oz, oy, ox = (np.array([cube_to_orig((c, c, c), start, (0.5,) * 3)[a] for c in range(size)]) for a in range(3))
    expect = 3 * oz[:, None, None] + 2 * oy[None, :, None] - ox[None, None, :]
    np.testing.assert_allclose(cube, expect, atol=1e-3)


def test_shrinking_keeps_constants_and_pads_with_air() -> None:
    hu = np.full((40, 50, 60), 123.0, np.float32)
    cube = resample_box(hu, (0, -10, 0), (40, 70, 60), 16)  # y box runs 10 voxels past each side... and beyond
    scale_y = 70 / 16
    centres = (np.arange(16) + 0.5) * scale_y - 10 - 0.5
    inside = (centres >= -0.5) & (centres <= 49.5)
    np.testing.assert_allclose(cube[:, inside, :], 123.0, atol=1e-3)
    assert np.all(cube[:, ~inside, :] == -1024.0) and (~inside).sum() == 4


def test_padding_values_become_air() -> None:
    vol = _chest()
    _, yy, xx = np.mgrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    fov = (yy - 32) ** 2 + (xx - 40) ** 2 < 36**2
    vol[~fov & (xx < 40)] = -3024.0  # outside the scan's circle
    vol[~fov & (xx >= 40)] = -2048.0
    cube, _ = make_cube(vol, (2.0, 1.5, 1.5), 16)
    assert cube.dtype == np.int16 and cube.min() == -1024
    assert np.all(cube[:, [0, -1]][:, :, [0, -1]] == -1024)  # the corners were padding


def test_body_crop_is_square_in_mm_and_drops_the_table() -> None:
    vol = _chest(table=True)
    body = body_mask(vol, (2.0, 1.5, 1.5))
    assert not body[:, 56:58, :].any()  # the table shell is not body
    assert body[30, 32, 40] and body[30, 32, 30]  # lungs are inside (holes filled)
    start, shape = crop_box(vol, (2.0, 1.5, 1.5))
    # body x 9..71 (63 voxels) + 2 margin each side -> 67 from x = 7; y 13..51 + margins -> 11..53,
    # centre 32.5, widened to 67 voxels -> starts at 32.5 - 33.5 = -1 (one row of air padding); the
    # strut's stub (at most 2 voxels) that stays attached may shift it by one
    assert start[0] == 0 and start[1] in (-1, 0) and start[2] == 7 and shape == (60, 67, 67)


def test_long_scan_is_cut_to_the_lungs() -> None:
    vol = _chest(d=100, lung_z=(30, 70))
    start, shape = crop_box(vol, (2.0, 1.5, 1.5))
    margin = 5  # 10 mm at 2 mm slices
    assert (start[0], start[0] + shape[0]) == (30 - margin, 70 + margin)
    # anisotropic pixels: the box is square in mm, not in voxels
    start, shape = crop_box(vol, (2.0, 1.5, 0.75))
    assert shape[1] * 1.5 == pytest.approx(shape[2] * 0.75, abs=1.5)


def test_make_cube_geometry_record() -> None:
    vol = _chest(d=30)
    cube, geom = make_cube(vol, (2.5, 0.8, 0.8), 32)
    assert cube.shape == (32, 32, 32)
    assert geom.orig_shape == (30, 64, 80) and geom.size == 32
    assert geom.scale == pytest.approx(tuple(s / 32 for s in geom.crop_shape))
    assert geom.spacing == pytest.approx((2.5 * 30 / 32, 0.8 * 67 / 32, 0.8 * 67 / 32))
    # the lung centre stays lung, the body wall stays soft tissue
    lz, ly, lx = (round(c) for c in orig_to_cube((15, 32, 54), geom.crop_start, geom.scale))
    assert cube[lz, ly, lx] < -700
    with pytest.raises(ValueError, match="size must be >= 16"):
        make_cube(vol, (1, 1, 1), 8)
