"""Memorization check: a copy of a training volume is flagged, a different volume is not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ctsgan.metrics.memorization import downsample_for_ssim, memorization_check, ssim_volumes


def _volume(seed: int, size: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=(size,) * 3), 2.0)
    return (noise / noise.std() * 300 - 400).astype(np.float32)  # smooth HU texture


def test_copy_is_flagged_and_a_different_volume_is_not() -> None:
    train = [_volume(s) for s in (1, 2, 3)]
    fakes = [train[1].copy(), _volume(9)]
    small_t = [downsample_for_ssim(v, 16) for v in train]
    small_f = [downsample_for_ssim(v, 16) for v in fakes]
    # descriptor: the downsampled volume itself (any feature map works the same way)
    desc_t = np.stack([s.ravel() for s in small_t])
    desc_f = np.stack([s.ravel() for s in small_f])
    res = memorization_check(["copy", "new"], desc_f, small_f, ["t1", "t2", "t3"], desc_t, small_t)
    assert res.flagged == ["copy"]
    assert res.nearest_by_feature[0] == "t2" and res.nearest_by_ssim[0] == "t2"
    assert res.feature_distance[0] == pytest.approx(0.0, abs=1e-9)
    assert res.ssim[0] == pytest.approx(1.0, abs=1e-9)
    assert res.ssim[1] < res.ssim_threshold
    assert res.feature_threshold is not None and res.feature_distance[1] > res.feature_threshold
    # the real-vs-real reference: each training volume's nearest *other* training volume
    assert len(res.train_nn_feature_distance) == 3 and min(res.train_nn_feature_distance) > 0
    assert max(res.train_nn_ssim) < 1.0
    d = res.to_dict()
    assert d["n_flagged"] == 1 and "near-copy if SSIM >= 0.95 and >" in d["rule"]
    assert res.ssim_reference == pytest.approx(max(res.train_nn_ssim))


def test_slightly_noisy_copy_is_still_flagged_by_ssim() -> None:
    train = [_volume(s) for s in (4, 5)]
    noisy = train[0] + np.random.default_rng(0).normal(0, 5, train[0].shape).astype(np.float32)
    small_t = [downsample_for_ssim(v, 16) for v in train]
    small_f = [downsample_for_ssim(noisy, 16)]
    far = np.full((1, 3), 1e6)  # features say "far": SSIM alone must flag it
    res = memorization_check(["noisy"], far, small_f, ["a", "b"], np.eye(2, 3), small_t)
    assert res.flagged == ["noisy"] and res.nearest_by_ssim == ["a"]


def test_one_training_volume_has_no_feature_threshold() -> None:
    v = _volume(6, 12)
    small = [downsample_for_ssim(v, 12)]
    res = memorization_check(["g"], np.zeros((1, 4)), small, ["t"], np.ones((1, 4)), small)
    assert res.feature_threshold is None and res.train_nn_feature_distance == []
    assert res.flagged == ["g"]  # identical volume: SSIM 1


def test_ssim_of_identical_volumes_is_one_and_shapes_must_match() -> None:
    a = downsample_for_ssim(_volume(7), 16)
    assert a.shape == (16, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert ssim_volumes(a, a) == pytest.approx(1.0)
    assert ssim_volumes(a, 1.0 - a) < 0.0  # inverted contrast: anti-correlated structure
    with pytest.raises(ValueError, match="equal shapes"):
        ssim_volumes(a, a[:8])


def test_very_similar_real_scans_do_not_flag_a_new_volume_by_ssim() -> None:
    # training volumes that differ only by faint noise: real-vs-real SSIM is near 1; a new
    # volume above 0.95 but less similar than real pairs is no copy; an exact copy still is
    base = _volume(8)
    rng = np.random.default_rng(1)
    train = [base + rng.normal(0, 3, base.shape).astype(np.float32) for _ in range(3)]
    fakes = [base + rng.normal(0, 60, base.shape).astype(np.float32), train[2].copy()]
    small_t = [downsample_for_ssim(v, 16) for v in train]
    small_f = [downsample_for_ssim(v, 16) for v in fakes]
    desc_t = np.stack([v.ravel() for v in train])
    desc_f = np.stack([v.ravel() for v in fakes])
    res = memorization_check(["new", "copy"], desc_f, small_f, ["a", "b", "c"], desc_t, small_t)
    assert res.ssim_reference is not None and res.ssim_reference > 0.95
    assert 0.95 < res.ssim[0] < res.ssim_reference
    assert res.flagged == ["copy"]
