"""Realism measures (body mask, tissue fractions, Wasserstein) and the phantom against real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.phantom import make_phantom
from ctsgan.data.realism import (
    REAL_FRACTION_RANGES,
    body_histogram,
    body_mask,
    hu_wasserstein,
    read_reference,
    realism_report,
    tissue_fractions,
)

REAL_SERIES = Path("lung-pet-ct-dx") / "Lung_Dx-A0001" / "chest-5mm"


def _disc_volume() -> np.ndarray:
    """(2, 40, 40): slice 0 a body disc (r=12) with a lung hole and a separate 'table' strip;
    slice 1 empty air."""
    vol = np.full((2, 40, 40), -1000, dtype=np.int16)
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 18) ** 2 + (xx - 20) ** 2 <= 12**2
    vol[0][disc] = 40
    vol[0][(yy - 18) ** 2 + (xx - 20) ** 2 <= 5**2] = -850  # lung inside: a hole to fill
    vol[0, 35:37, 5:35] = 200  # table: separate, smaller component
    return vol


def test_body_mask_largest_component_holes_filled() -> None:
    vol = _disc_volume()
    m = body_mask(vol)
    yy, xx = np.mgrid[:40, :40]
    expected = (yy - 18) ** 2 + (xx - 20) ** 2 <= 12**2
    assert np.array_equal(m[0], expected)  # hole filled, table left out
    assert not m[1].any()


def test_tissue_fractions_by_hand() -> None:
    # body of 10 voxels in one slice: 2 lung (-850), 3 soft (40), 1 overlap (-70: fat and soft),
    # 2 fat (-120), 2 bone (400, 1000); its air around is not body.
    vals = np.array([-850, -850, 40, 40, 40, -70, -120, -120, 400, 1000], dtype=np.int16)
    vol = np.full((1, 5, 6), -1000, dtype=np.int16)
    vol[0, 1:3, 1:6] = vals.reshape(2, 5)
    mask = np.zeros_like(vol, dtype=bool)
    mask[0, 1:3, 1:6] = True
    f = tissue_fractions(vol, mask)
    assert f == pytest.approx({"lung": 0.2, "soft": 0.4, "fat": 0.3, "bone": 0.2})


def test_wasserstein_of_a_shift_is_the_shift() -> None:
    rng = np.random.default_rng(0)
    a = np.full((3, 30, 30), -1000, dtype=np.int16)
    a[:, 5:25, 5:25] = rng.integers(-200, 200, size=(3, 20, 20))
    b = a.copy()
    b[:, 5:25, 5:25] += 37
    assert hu_wasserstein(a, b) == pytest.approx(37.0, abs=1e-9)
    assert hu_wasserstein(a, a) == 0.0
    # histograms can be passed instead of volumes
    assert hu_wasserstein(hist=body_histogram(a), reference_hist=body_histogram(b)) == pytest.approx(37.0)
    with pytest.raises(ValueError, match="reference"):
        hu_wasserstein(a)


@pytest.fixture(scope="module")
def real_hist(shared_ct_dir: Path) -> np.ndarray:
    hu, spacing = read_reference(shared_ct_dir / REAL_SERIES)
    assert hu.min() >= -1024 and spacing[0] == pytest.approx(5.0)
    return body_histogram(hu)


def test_real_reference_fractions_match_issue(shared_ct_dir: Path) -> None:
    hu, _ = read_reference(shared_ct_dir / REAL_SERIES)
    f = tissue_fractions(hu)
    for name, (lo, hi) in REAL_FRACTION_RANGES.items():
        assert lo <= f[name] <= hi, (name, f[name])


def _check(rep: dict[str, float]) -> None:
    assert rep["wasserstein_hu"] <= 100.0, rep
    for name, (lo, hi) in REAL_FRACTION_RANGES.items():
        assert lo <= rep[name] <= hi, (name, rep)


@pytest.mark.realdata
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_phantom_64_is_realistic(real_hist: np.ndarray, seed: int) -> None:
    _check(realism_report(make_phantom(64, seed).hu, real_hist))


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_phantom_224_is_realistic(real_hist: np.ndarray, seed: int) -> None:
    _check(realism_report(make_phantom(224, seed).hu, real_hist))
