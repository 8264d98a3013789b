"""VOI extraction, masks and random lung points."""

from __future__ import annotations

import numpy as np
import pytest

from ctsgan.nodules.inpainter import voi_masks
from ctsgan.nodules.voi import ellipsoid_mask, extract_voi, mask_radius_vox, random_lung_points, voi_slices


def test_extract_voi_inside_and_at_the_border() -> None:
    vol = np.arange(10 * 12 * 14, dtype=np.int16).reshape(10, 12, 14)
    voi = extract_voi(vol, (5, 6, 7), 4)
    assert voi.shape == (4, 4, 4) and voi.dtype == np.int16
    assert np.array_equal(voi, vol[3:7, 4:8, 5:9])  # centre at index S // 2
    edge = extract_voi(vol, (0, 0, 13), 4)
    assert np.array_equal(edge[2:, 2:, :3], vol[:2, :2, 11:14])
    assert (edge[:2] == -1024).all() and (edge[:, :, 3] == -1024).all()
    with pytest.raises(ValueError, match="outside the volume"):
        voi_slices(vol.shape, (50, 0, 0), 4)
    with pytest.raises(ValueError, match="z, y, x"):
        extract_voi(vol[0], (1, 1, 1), 4)


def test_ellipsoid_volume_and_mask_geometry() -> None:
    ball = ellipsoid_mask(33, (10, 10, 10))
    assert abs(ball.sum() / (4 / 3 * np.pi * 1000) - 1) < 0.03
    assert ball[16, 16, 16] and ball[16, 16, 26] and not ball[16, 16, 27]
    # anisotropic spacing: 2 mm slices halve the radius along z
    assert mask_radius_vox(10.0, (2.0, 1.0, 1.0), 1.0, 0.0) == (2.5, 5.0, 5.0)
    nodule, mask = voi_masks(32, 8.0, (1.0, 1.0, 1.0), 1.5, 2.0)
    assert not (nodule & ~mask).any()  # the nodule lies inside the mask
    assert nodule[16, 16, 20] and not nodule[16, 16, 21]  # radius 4
    assert mask[16, 16, 24] and not mask[16, 16, 25]  # radius 1.5 * 4 + 2 = 8
    off = ellipsoid_mask((5, 6, 7), (1, 1, 1), (0, 0, 0))
    assert off.shape == (5, 6, 7) and off.sum() == 4  # centre + 3 neighbours inside the volume


def test_random_lung_points_respect_depth_and_exclusion() -> None:
    lung = ellipsoid_mask(40, (15, 15, 15))
    rng = np.random.default_rng(0)
    pts = random_lung_points(lung, rng, 200, min_depth_mm=10.0)
    assert pts.shape == (200, 3)
    dist = np.linalg.norm(pts - 20, axis=1)
    assert dist.max() < 15 - 10 + 1.0
    excl = np.zeros_like(lung)
    excl[:20] = True
    pts = random_lung_points(lung, rng, 100, exclude=excl)
    assert (pts[:, 0] >= 20).all() and lung[tuple(pts.T)].all()
    assert random_lung_points(lung, rng, 5, min_depth_mm=50.0).shape == (0, 3)
