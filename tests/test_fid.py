"""FID maths (torchmetrics' formula on feature vectors) and the 2.5D FID, against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ctsgan.metrics.fid import frechet_distance
from ctsgan.metrics.fid_2p5d import Plane, fid_2p5d


def test_one_dimensional_value_worked_out_by_hand() -> None:
    # {0, 2}: mean 1, unbiased variance 2; {3, 7}: mean 5, variance 8.
    # FID = (1 - 5)^2 + 2 + 8 - 2 sqrt(2 * 8) = 16 + 10 - 8 = 18
    assert frechet_distance(np.array([[0.0], [2.0]]), np.array([[3.0], [7.0]])) == pytest.approx(18.0, abs=1e-9)


def _diag_set(mean: tuple[float, float], half: tuple[float, float]) -> np.ndarray:
    # the four corners (m0 +- h0, m1 +- h1): mean m, covariance diag(4 h^2 / 3), no correlation
    return np.array([[mean[0] + s0 * half[0], mean[1] + s1 * half[1]] for s0 in (-1, 1) for s1 in (-1, 1)])


def test_diagonal_gaussians_value_worked_out_by_hand() -> None:
    a = _diag_set((0.0, 1.0), (1.0, 2.0))
    b = _diag_set((2.0, -1.0), (3.0, 0.5))
    s1 = np.array([4 * 1.0**2 / 3, 4 * 2.0**2 / 3])
    s2 = np.array([4 * 3.0**2 / 3, 4 * 0.5**2 / 3])
    expected = (2.0**2 + 2.0**2) + float(np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2)))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_same_set_scores_about_zero_and_pure_shift_scores_its_squared_length() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2048))
    assert abs(frechet_distance(x, x)) < 1e-3  # the traces are ~2048 each
    # identical covariances: the trace terms cancel, FID = |shift|^2
    shift = np.full(2048, 0.05)
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), abs=1e-4)


def test_more_shifted_set_scores_higher() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 64)), rng.normal(size=(30, 64))
    values = [frechet_distance(x, y + s) for s in (0.0, 0.3, 1.0)]
    assert values[0] < values[1] < values[2]


def test_reduced_route_equals_full_2048_dimensional_computation() -> None:
    # 20 + 24 samples in 400-d: rank-deficient covariances; the span reduction must be exact
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 400)) * rng.uniform(0.5, 2.0, 400)
    y = rng.normal(size=(24, 400)) + 0.1
    full = frechet_distance(x, y, reduce=False)
    assert frechet_distance(x, y) == pytest.approx(full, rel=1e-6)


@pytest.mark.parametrize(
    ("a", "b"),
    [((1, 4), (5, 4)), ((5, 4), (5, 3)), ((5,), (5,))],
)
def test_bad_inputs_are_rejected(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(a), np.ones(b))


def test_2p5d_fid_is_the_mean_of_the_three_plane_fids() -> None:
    rng = np.random.default_rng(3)
    base = {p: rng.normal(size=(12, 8)) for p in Plane}
    shifts = {Plane.AXIAL: 1.0, Plane.CORONAL: 2.0, Plane.SAGITTAL: 3.0}
    fake = {p: base[p] + shifts[p] for p in Plane}  # pure shifts: FID = 8 * s^2
    out = fid_2p5d(base, fake)
    for p, s in shifts.items():
        assert out[f"fid_2p5d_{p.value}"] == pytest.approx(8 * s * s, rel=1e-6)
    assert out["fid_2p5d"] == pytest.approx(8 * (1 + 4 + 9) / 3, rel=1e-6)
    assert not math.isnan(out["fid_2p5d"])
    with pytest.raises(ValueError, match="coronal"):
        fid_2p5d({Plane.AXIAL: base[Plane.AXIAL]}, fake)


def test_nan_features_or_a_nan_result_are_refused_never_scored_zero() -> None:
    # issue #13: max(0.0, nan) is 0.0, so a NaN volume used to get a perfect FID
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 16)), rng.normal(size=(8, 16))
    b[3, 5] = np.nan
    with pytest.raises(ValueError, match="second feature set holds 1 NaN"):
        frechet_distance(a, b)
    a[0, 0] = np.inf
    with pytest.raises(ValueError, match="first feature set holds 1 NaN"):
        frechet_distance(a, rng.normal(size=(8, 16)))


def test_a_nan_result_from_the_maths_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctsgan.metrics.fid as fid_mod

    monkeypatch.setattr(fid_mod, "_compute_fid", lambda *a: torch.tensor(float("nan"), dtype=torch.float64))
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="not finite"):
        frechet_distance(rng.normal(size=(4, 8)), rng.normal(size=(4, 8)))
