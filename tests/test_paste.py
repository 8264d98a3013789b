"""Paste-back: blend weights, exact copy outside the blend zone, placement away from the lung wall."""

from __future__ import annotations

import numpy as np
import pytest

from ctsgan.nodules.paste import blend_weight, lung_depth_mm, paste_voi, placement_mask
from ctsgan.nodules.voi import ellipsoid_mask


def test_blend_weight_ramp() -> None:
    mask = ellipsoid_mask(21, (4, 4, 4))
    w = blend_weight(mask, 3.0)
    assert (w[mask] == 1).all()
    # on the x axis through the centre: mask edge at x = 14; distance 1, 2 -> half-cosine, >= 3 -> 0
    assert w[10, 10, 15] == pytest.approx(0.5 * (1 + np.cos(np.pi / 3)))
    assert w[10, 10, 16] == pytest.approx(0.5 * (1 + np.cos(2 * np.pi / 3)))
    assert w[10, 10, 17] == 0 and w[0, 0, 0] == 0
    assert np.array_equal(blend_weight(mask, 0), mask.astype(np.float32))


def test_paste_changes_only_the_blend_zone() -> None:
    rng = np.random.default_rng(1)
    vol = rng.integers(-1000, 200, (30, 30, 30)).astype(np.int16)
    voi = np.full((16, 16, 16), 40.0, dtype=np.float32)
    w = blend_weight(ellipsoid_mask(16, (3, 3, 3)), 2.0)
    out = paste_voi(vol, voi, (15, 15, 29), w)  # VOI hangs over the x border
    assert out.dtype == np.int16 and out.shape == vol.shape
    assert out[15, 15, 29] == 40  # mask centre gets the VOI
    full_w = np.zeros(vol.shape, dtype=np.float32)
    full_w[7:23, 7:23, 21:30] = w[:, :, :9]
    assert np.array_equal(out[full_w == 0], vol[full_w == 0])  # bit-identical outside
    ramp = (full_w > 0) & (full_w < 1)
    expect = np.rint(full_w * 40 + (1 - full_w) * vol.astype(np.float32))
    assert np.array_equal(out[ramp], expect[ramp].astype(np.int16))
    with pytest.raises(ValueError, match="same"):
        paste_voi(vol, voi, (15, 15, 15), w[:8])


def test_placement_keeps_the_radius_from_the_wall() -> None:
    lung = np.zeros((20, 40, 40), dtype=bool)
    lung[:, 5:35, 5:35] = True  # a box, 2 mm slices
    depth = lung_depth_mm(lung, (2.0, 1.0, 1.0))
    assert depth[10, 20, 20] == pytest.approx(15.0)  # in-plane wall 15 voxels = 15 mm away
    ok = placement_mask(lung, 6.0, (2.0, 1.0, 1.0))
    zs, ys, xs = np.nonzero(ok)
    assert ys.min() == 11 and ys.max() == 28  # > 6 mm from the wall at 4.5 / 34.5 (edt to outside voxels)
    assert not placement_mask(lung, 30.0, (2.0, 1.0, 1.0)).any()
