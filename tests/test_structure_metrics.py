"""Structure metrics (``ctsgan.metrics.structure``): hand-worked values and known cases on phantoms.

Known cases: set A (real, phantoms (100, i)) against sets made from set B (phantoms (200, i)),
N_SET volumes of 32^3 each. The values quoted in the docstrings were measured with this fixture
(and, for the real-vs-real spread, with 8 sets of 6 phantoms, all 56 ordered pairs); bounds
leave wide margins on both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsgan.metrics import structure as st
from ctsgan.metrics.structure import (
    VolumeStructure,
    area_weights,
    copy_distances,
    diversity,
    diversity_ratio,
    nearest_cube_distances,
    profile_error_from_curves,
    profile_orientation,
    resample_area,
    slice_tissue_fractions,
    small_cube,
    structure_metrics,
    structure_metrics_from_summaries,
    volume_structure,
    z_profile_curves,
    z_profile_error,
    z_profiles,
    z_variation,
    z_variation_ratio,
)

SIZE = 32
N_SET = 6


# ---------------------------------------------------------------- hand-worked values


def test_area_weights_by_hand() -> None:
    """3 cells onto 2: cell 0 of the output = [0, 1/2) = all of input 0 (1/3) + half of input 1 (1/6)."""
    np.testing.assert_allclose(area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(area_weights(2, 4), [[1, 0], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_allclose(area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(area_weights(5, 5), np.eye(5), atol=1e-12)
    with pytest.raises(ValueError):
        area_weights(0, 2)


def test_resample_area_averages_blocks() -> None:
    a = np.arange(16, dtype=float).reshape(4, 4)
    np.testing.assert_allclose(resample_area(a, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError):
        resample_area(a, (2, 2, 2))


def _two_slices() -> np.ndarray:
    """Slice 0: a 3x3 body (6 soft, 1 fat, 1 bone around 1 enclosed lung voxel), air around it;
    slice 1: one soft voxel in air."""
    vol = np.full((2, 5, 5), -1024, dtype=np.int16)
    vol[0, 1:4, 1:4] = [[0, 0, 0], [0, -800, 0], [-120, 500, 0]]
    vol[1, 2, 2] = 50
    return vol


def test_slice_tissue_fractions_by_hand() -> None:
    """Fractions of the body voxels: slice 0 has 9 (lung 1, soft 6, fat 1, bone 1), slice 1 one."""
    f = slice_tissue_fractions(_two_slices())
    assert f.shape == (4, 2)
    np.testing.assert_allclose(f[:, 0], [1 / 9, 6 / 9, 1 / 9, 1 / 9])
    np.testing.assert_allclose(f[:, 1], [0.0, 1.0, 0.0, 0.0])
    # the soft and fat ranges overlap on [-100, -50): such a voxel counts in both, as realism states
    np.testing.assert_allclose(slice_tissue_fractions(np.full((1, 2, 2), -75))[:, 0], [0, 1, 1, 0])
    # no body (nothing above -500 HU): all fractions 0, even for lung-valued air
    np.testing.assert_allclose(slice_tissue_fractions(np.full((1, 2, 2), -800)), np.zeros((4, 1)))
    # a given mask is used as is
    np.testing.assert_allclose(slice_tissue_fractions(np.full((1, 2, 2), -800), np.ones((1, 2, 2), bool))[:, 0], [1, 0, 0, 0])
    with pytest.raises(ValueError):
        slice_tissue_fractions(_two_slices(), np.ones((1, 2, 2), bool))


def test_z_profiles_resample_relative_z() -> None:
    """2 slices onto 4 bins: each slice fills half of relative z; onto 1 bin: their mean."""
    vol = _two_slices()
    np.testing.assert_allclose(z_profiles(vol, bins=4)[0], [1 / 9, 1 / 9, 0.0, 0.0])
    np.testing.assert_allclose(z_profiles(vol, bins=4)[1], [6 / 9, 6 / 9, 1.0, 1.0])
    np.testing.assert_allclose(z_profiles(vol, bins=1)[:, 0], [1 / 18, 15 / 18, 1 / 18, 1 / 18])
    # a volume twice as deep with each slice doubled has the same profile
    np.testing.assert_allclose(z_profiles(np.repeat(vol, 2, axis=0), bins=4), z_profiles(vol, bins=4))
    with pytest.raises(ValueError):
        z_profiles(vol, bins=0)
    with pytest.raises(ValueError):
        z_profiles(vol[0])


def test_profile_error_by_hand() -> None:
    """R = [0, 1]: sum |R - mean R| = 0.5 + 0.5 = 1; G flat at 0.5 -> 1; G upside down -> 2."""
    r = np.array([[0.0, 1.0]])
    assert profile_error_from_curves(r, r)[0] == 0.0
    assert profile_error_from_curves(r, np.array([[0.5, 0.5]]))[0] == pytest.approx(1.0)
    assert profile_error_from_curves(r, np.array([[1.0, 0.0]]))[0] == pytest.approx(2.0)
    # two tissues: sums run over both; a flat real tissue has no per-tissue error (NaN)
    total, per = profile_error_from_curves(np.array([[0.0, 1.0], [0.2, 0.2]]), np.array([[0.0, 1.0], [0.3, 0.3]]))
    assert total == pytest.approx(0.2 / 1.0)
    assert per[0] == 0.0 and np.isnan(per[1])
    assert np.isnan(profile_error_from_curves(np.zeros((1, 3)), np.ones((1, 3)))[0])
    with pytest.raises(ValueError):
        profile_error_from_curves(np.zeros((1, 3)), np.zeros((1, 4)))


def test_profile_orientation_by_hand() -> None:
    """R = [0, 1]: A(R) = [-0.5, 0.5], |A(R)|^2 = 0.5. G = R: 1; flipped: -1; flat: 0; [0, 2]: 2."""
    r = np.array([[0.0, 1.0]])
    assert profile_orientation(r, r) == pytest.approx(1.0)
    assert profile_orientation(r, r[:, ::-1]) == pytest.approx(-1.0)
    assert profile_orientation(r, np.array([[0.5, 0.5]])) == 0.0
    assert profile_orientation(r, np.array([[0.0, 2.0]])) == pytest.approx(2.0)
    assert np.isnan(profile_orientation(np.array([[1.0, 0.0, 1.0]]), np.array([[0.0, 1.0, 2.0]])))


def test_z_profile_error_of_volumes_by_hand() -> None:
    """Real: slice 0 a 3x3 body of 8 soft around 1 lung voxel, slice 1 all soft.
    Lung curve [1/9, 0], soft [8/9, 1]: denominator 1/9 + 1/9. Slice 0 repeated: numerator
    1/9 + 1/9 -> 1; upside down: 2/9 + 2/9 -> 2."""
    real = np.zeros((2, 3, 3), dtype=np.int16)
    real[0, 1, 1] = -800
    assert z_profile_error([real], [real[[0, 0]]], bins=2) == pytest.approx(1.0)
    assert z_profile_error([real], [real[::-1]], bins=2) == pytest.approx(2.0)
    assert z_profile_error([real], [real], bins=2) == 0.0


def _boxed(values: list[float], outside: list[float]) -> np.ndarray:
    """Slices of 4x4: a 2x2 body square of ``values[k]`` HU, air of ``outside[k]`` around it."""
    vol = np.empty((len(values), 4, 4), dtype=np.float32)
    for k, (v, o) in enumerate(zip(values, outside, strict=True)):
        vol[k] = o
        vol[k, 1:3, 1:3] = v
    return vol


def test_z_variation_by_hand() -> None:
    """Body values 0, 100, 300 -> d=1: (100 + 200) / 2 = 150; d=2: 300. Air outside changes by
    10 HU per slice but is not body, so it does not count (over all voxels it would)."""
    vol = _boxed([0, 100, 300], [-1000, -1010, -1020])
    np.testing.assert_allclose(z_variation(vol, (1, 2)), [150.0, 300.0])
    # HU are clipped to the network window first: 2000 counts as 600
    np.testing.assert_allclose(z_variation(_boxed([0, 2000], [-1000, -1000]), (1,)), [600.0])
    # the body of either slice counts: a body appearing in slice 1 only, on a constant background
    appear = _boxed([-1000, 0], [-1000, -1000])
    np.testing.assert_allclose(z_variation(appear, (1,)), [1000.0])
    # no body anywhere: all voxels count
    np.testing.assert_allclose(z_variation(np.stack([np.full((2, 2), -1000.0), np.full((2, 2), -900.0)]), (1,)), [100.0])
    with pytest.raises(ValueError):
        z_variation(vol, (3,))
    with pytest.raises(ValueError):
        z_variation(vol, (0,))


def test_z_variation_ratio_by_hand() -> None:
    real = [_boxed([0, 100, 200], [-1000] * 3), _boxed([0, 300, 600], [-1000] * 3)]  # d=1: 100, 300 -> 200
    fake = [_boxed([0, 50, 100], [-1000] * 3)]  # d=1: 50
    ratio, per = z_variation_ratio(real, fake, distances=(1, 2))
    assert per[1] == pytest.approx(50 / 200)
    assert per[2] == pytest.approx(100 / 400)
    assert ratio == pytest.approx(0.25)


def test_small_cube_and_diversity_by_hand() -> None:
    """Constant volumes of 0, 100 and 400 HU: pairwise 100, 400, 300 -> mean 800/3."""
    vols = [np.full((4, 4, 4), v, dtype=np.int16) for v in (0, 100, 400)]
    assert diversity(vols, size=2) == pytest.approx(800 / 3)
    # clipped to 600 first: 0 vs 3000 HU is 600 apart
    assert diversity([np.zeros((2, 2, 2)), np.full((2, 2, 2), 3000.0)], size=2) == pytest.approx(600.0)
    # the cube is the block mean; different shapes map to the same cube
    v = np.zeros((4, 4, 4), dtype=np.float32)
    v[:2, :2, :2] = 80.0
    cube = small_cube(v, 2)
    assert cube.shape == (2, 2, 2) and cube[0, 0, 0] == pytest.approx(80.0) and cube[1, 1, 1] == 0.0
    assert small_cube(np.zeros((3, 5, 7)), 4).shape == (4, 4, 4)
    assert diversity_ratio(vols[:2], [vols[0], np.full((4, 4, 4), 50)], size=2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        diversity(vols[:1])


def test_hu_clip_is_the_network_window() -> None:
    from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT

    assert st.CLIP_HU == (HU_MIN_DEFAULT, HU_MAX_DEFAULT)


def test_structure_metrics_reasons_and_bad_inputs() -> None:
    real = [_boxed([0, 100, 200], [-1000] * 3)]
    m = structure_metrics(real, real, bins=3, distances=(1,), size=2)
    assert m["z_variation_ratio"] == pytest.approx(1.0)
    assert m["z_profile_error"] == 0.0
    assert m["diversity_ratio"] is None and ">= 2 volumes" in m["diversity_reason"]
    # a real set that never changes along z gives no z-variation ratio, with the reason
    flat = [np.zeros((3, 4, 4)), np.zeros((3, 4, 4))]
    m = structure_metrics(flat, flat, bins=3, distances=(1,), size=2)
    assert m["z_variation_ratio"] is None and m["z_variation_reason"]
    assert m["z_profile_error"] is None and m["z_profile_reason"]
    assert m["diversity_ratio"] is None and m["diversity_reason"]
    with pytest.raises(ValueError):
        structure_metrics([], real)
    with pytest.raises(ValueError):
        structure_metrics([np.zeros((4, 4))], real)
    nan_vol = real[0].astype(np.float32)
    nan_vol[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        structure_metrics(real, [nan_vol], bins=3, distances=(1,), size=2)
    with pytest.raises(ValueError):
        structure_metrics_from_summaries(
            [volume_structure(real[0], 3, (1,), 2)], [volume_structure(real[0], 2, (1,), 2)]
        )


def test_memory_mapped_int16_gives_the_same_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vols = [rng.integers(-1024, 600, size=(8, 6, 6)).astype(np.int16) for _ in range(3)]
    paths = []
    for i, v in enumerate(vols):
        paths.append(tmp_path / f"v{i}.npy")
        np.save(paths[-1], v)
    mm = [np.load(p, mmap_mode="r") for p in paths]
    a = structure_metrics(vols[:2], vols[1:], bins=4, size=4)
    b = structure_metrics(mm[:2], [v.astype(np.float32) for v in mm[1:]], bins=4, size=4)
    assert a == b


def test_z_profile_curves_for_a_figure() -> None:
    vol = _two_slices()
    c = z_profile_curves([vol], {"G": [vol[::-1]]}, bins=2)
    assert c["tissues"] == ["lung", "soft", "fat", "bone"]
    np.testing.assert_allclose(c["z"], [0.25, 0.75])
    np.testing.assert_allclose(c["real"], z_profiles(vol, 2))
    np.testing.assert_allclose(c["fakes"]["G"], z_profiles(vol, 2)[:, ::-1])


# ---------------------------------------------------------------- known cases on phantoms


@pytest.fixture(scope="session")
def phantom_sets() -> tuple[list[VolumeStructure], list[np.ndarray]]:
    """(summaries of real set A, volumes of set B): 2 x N_SET chest phantoms of 32^3 (~8 s)."""
    from ctsgan.data.phantom import make_phantom

    real = [volume_structure(make_phantom(SIZE, (100, i)).hu) for i in range(N_SET)]
    other = [make_phantom(SIZE, (200, i)).hu for i in range(N_SET)]
    return real, other


def _score(phantom_sets: tuple[list[VolumeStructure], list[np.ndarray]], fake: list[np.ndarray]) -> dict:
    real, _ = phantom_sets
    return structure_metrics_from_summaries(real, [volume_structure(v) for v in fake])


def test_real_vs_real_scores_near_0_1_1(phantom_sets) -> None:
    """Measured (8 sets x 6 phantoms at 32^3, 56 ordered pairs): z-profile error 0.09-0.22,
    orientation 0.74-1.16, z-variation ratio 0.97-1.03 (each d within 0.96-1.04), diversity
    ratio 0.70-1.43. This fixture: 0.12, 1.02, 1.00, 0.88."""
    m = _score(phantom_sets, phantom_sets[1])
    assert m["z_profile_error"] < 0.45
    assert m["z_profile_orientation"] > 0.5
    assert 0.85 < m["z_variation_ratio"] < 1.15
    assert all(0.85 < v < 1.15 for v in m["z_variation_ratio_per_d"].values())
    assert 0.5 < m["diversity_ratio"] < 2.0
    assert m["n_real"] == m["n_fake"] == N_SET


def test_repeated_slice_is_flat_and_static(phantom_sets) -> None:
    """Middle axial slice repeated along z: measured profile error 0.96 (a flat line by
    construction), orientation 0 and z-variation ratio 0 (both exactly)."""
    fake = [np.repeat(v[SIZE // 2][None], SIZE, axis=0) for v in phantom_sets[1]]
    m = _score(phantom_sets, fake)
    assert m["z_profile_error"] > 0.7
    assert abs(m["z_profile_orientation"]) < 0.05
    assert m["z_variation_ratio"] < 0.05


def test_copies_have_no_diversity(phantom_sets) -> None:
    """One volume N times: measured diversity ratio 0 (exactly); profile error 0.20 and
    z-variation 0.99 look real: only diversity sees it."""
    m = _score(phantom_sets, [phantom_sets[1][0]] * N_SET)
    assert m["diversity_ratio"] < 0.05
    assert m["diversity_fake_hu"] == 0.0


def test_nearest_cube_distances_by_hand() -> None:
    """Constant cubes 0, 10, 40: nearest of 12 is 10 (2 HU), of 30 is 40 (10); leave one out,
    0 -> 10, 10 -> 0, 40 -> 10 (not themselves)."""
    ref = [np.full((2, 2, 2), v, np.float32) for v in (0.0, 10.0, 40.0)]
    got = nearest_cube_distances([np.full((2, 2, 2), v) for v in (12.0, 30.0)], ref)
    np.testing.assert_allclose(got, [2.0, 10.0])
    np.testing.assert_allclose(nearest_cube_distances(ref, ref, exclude_self=True), [10.0, 10.0, 30.0])
    with pytest.raises(ValueError, match="2 or more reference"):
        nearest_cube_distances(ref[:1], ref[:1], exclude_self=True)


def test_copy_distances_flag_copies_not_new_volumes(phantom_sets) -> None:
    """Copies of training volumes sit at distance 0 (copy ratio 0); the held-out phantoms of the
    fixture sit about as far from the training ones as those from each other (measured 1.21:
    85 HU against 71 HU)."""
    real, fake_vols = phantom_sets
    copies = copy_distances(real, real[:3])
    assert copies["nearest_train_hu"] == 0.0 and copies["copy_ratio"] == 0.0
    assert copies["closer_than_train_pair"] == 3  # every copy closer than two training volumes
    new = copy_distances(real, [volume_structure(v) for v in fake_vols])
    assert new["train_nearest_other_hu"] == copies["train_nearest_other_hu"] > 0
    assert 0.6 < new["copy_ratio"] < 1.6
    assert copy_distances(real[:1], real) == {}


def _chest(body: tuple[float, float], lung: tuple[float, float], size: int = 32) -> np.ndarray:
    """An ellipse body (soft tissue) with two lung ellipses, the same in every slice, air outside."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    sl = np.full((size, size), -1024.0, np.float32)
    sl[(yy / body[0]) ** 2 + (xx / body[1]) ** 2 < 1] = 40.0
    for cx in (-0.4, 0.4):
        sl[(yy / lung[0]) ** 2 + ((xx - cx) / lung[1]) ** 2 < 1] = -850.0
    return np.repeat(sl[None], size, axis=0)


def test_aligned_distance_finds_a_stretched_copy() -> None:
    """A training chest stretched (y x1.15, x x0.9) and turned 5 degrees is far from it voxel by
    voxel but a near-copy once the check may stretch and turn the training volumes back; another
    patient stays far either way. With only the identity transform it equals the plain distance."""
    from ctsgan.data.inplane_affine import affine_inplane
    from ctsgan.metrics.structure import aligned_nearest_distances, small_cube

    train = [_chest((0.6, 0.8), (0.35, 0.22)), _chest((0.75, 0.9), (0.45, 0.3))]
    import torch

    stretched = affine_inplane(torch.from_numpy(train[0])[None], np.array([[1.15, 0.9, 5.0]]), fill=-1024.0)[0].numpy()
    other = _chest((0.5, 0.95), (0.25, 0.3))
    cubes = [small_cube(stretched), small_cube(other)]
    plain = nearest_cube_distances(cubes, [small_cube(v) for v in train])
    grid = st.align_grid(scales=(0.9, 1.0, 1.15), angles=(0.0, 5.0))
    aligned, best = aligned_nearest_distances(cubes, train, grid)
    assert plain[0] > 60 and aligned[0] < 5  # measured: 93.1 -> 0.0 HU (the grid holds the exact transform)
    assert best[0] == (0, 1.15, 0.9, 5.0)
    assert aligned[1] > 30  # another patient is not a copy (measured 113.7 -> 62.9 HU)
    ident, _ = aligned_nearest_distances(cubes, train, np.array([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(ident, plain, rtol=1e-6)
    assert len(st.align_grid()) == 11 * 11 * 5
    # a 128^3 training volume is reduced to 64^3 before the transforms; the stretched copy is still found
    big = [np.repeat(np.repeat(np.repeat(v, 4, 0), 4, 1), 4, 2) for v in train]
    big_stretched = affine_inplane(torch.from_numpy(big[0])[None], np.array([[1.15, 0.9, 5.0]]), fill=-1024.0)[0].numpy()
    d_big, best_big = aligned_nearest_distances([small_cube(big_stretched)], big, grid)
    assert d_big[0] < 0.1 * nearest_cube_distances([small_cube(big_stretched)], [small_cube(v) for v in big])[0]
    assert best_big[0] == (0, 1.15, 0.9, 5.0)


def test_z_flipped_volumes_have_the_wrong_layout(phantom_sets) -> None:
    """Feet at the top: measured profile error 0.89 (fat 1.36, soft 0.88: the shoulders' fat
    and the abdomen's soft tissue end up at the wrong end; lung only 0.53, its profile is nearly
    symmetric), against 0.12 for the same volumes the right way up; orientation -1.02 against
    +1.02. z-variation and diversity cannot see a flip (identical to real vs real)."""
    upright = _score(phantom_sets, phantom_sets[1])
    m = _score(phantom_sets, [v[::-1] for v in phantom_sets[1]])
    assert m["z_profile_error"] > 0.6
    assert m["z_profile_error"] > 3 * upright["z_profile_error"]
    assert m["z_profile_orientation"] < -0.5
    assert m["z_variation_ratio"] == pytest.approx(upright["z_variation_ratio"])


def test_shuffled_slices_change_too_much(phantom_sets) -> None:
    """Axial slices in random order: measured z-variation ratio 2.27 (d=1: 3.28, d=2: 2.14,
    d=4: 1.40: neighbours no longer follow each other), profile error 1.09."""
    rng = np.random.default_rng(0)
    m = _score(phantom_sets, [v[rng.permutation(SIZE)] for v in phantom_sets[1]])
    assert m["z_variation_ratio"] > 1.6
    assert m["z_variation_ratio_per_d"]["1"] > 2.2


def test_warnings_name_each_broken_case(phantom_sets) -> None:
    from ctsgan.metrics.structure import structure_warnings

    assert structure_warnings(_score(phantom_sets, phantom_sets[1])) == []
    repeated = structure_warnings(_score(phantom_sets, [np.repeat(v[SIZE // 2][None], SIZE, axis=0) for v in phantom_sets[1]]))
    assert any("z-variation" in w for w in repeated) and any("z-profile" in w for w in repeated)
    copies = structure_warnings(_score(phantom_sets, [phantom_sets[1][0]] * N_SET))
    assert len(copies) == 1 and "diversity" in copies[0]
    rng = np.random.default_rng(0)
    shuffled = _score(phantom_sets, [v[rng.permutation(SIZE)] for v in phantom_sets[1]])
    assert any("differ far more" in w for w in structure_warnings(shuffled))
    flipped = _score(phantom_sets, [v[::-1] for v in phantom_sets[1]])
    assert any("z-profile" in w for w in structure_warnings(flipped))
    # against a noisy real reference (profile error 0.7 between real halves) 0.89 is not flagged
    assert not any("z-profile" in w for w in structure_warnings(flipped, {"z_profile_error": 0.7}))
    assert structure_warnings({"z_variation_ratio": None, "diversity_ratio": None, "z_profile_error": None}) == []


def test_pairwise_distance_samples_pairs_beyond_max_pairs() -> None:
    """Cubes 0, 1, ..., 9 (constant): all 45 pairs average (sum of |i - j|) / 45 = 165 / 45;
    a sample of 10 pairs gives a value among the pair distances, the same every call."""
    from ctsgan.metrics.structure import mean_pairwise_distance

    cubes = [np.full((2, 2, 2), float(v)) for v in range(10)]
    assert mean_pairwise_distance(cubes) == pytest.approx(165 / 45)
    sampled = mean_pairwise_distance(cubes, max_pairs=10)
    assert 1.0 <= sampled <= 9.0 and sampled == mean_pairwise_distance(cubes, max_pairs=10)
    assert mean_pairwise_distance(cubes[:2], max_pairs=1) == 1.0
    with pytest.raises(ValueError):
        mean_pairwise_distance(cubes, max_pairs=0)


def test_profile_layout_error_by_hand() -> None:
    """Right layout at a wrong level: z-profile error high, layout error 0; a flat curve: 1 on both."""
    from ctsgan.metrics.structure import profile_error_from_curves, profile_layout_error

    real = np.array([[0.1, 0.3, 0.5, 0.3]])  # mean 0.3; sum |R - mean| = 0.2 + 0 + 0.2 + 0 = 0.4
    shifted = real + 0.1  # same layout, 0.1 too high everywhere
    assert profile_error_from_curves(real, shifted)[0] == pytest.approx(0.4 / 0.4)
    assert profile_layout_error(real, shifted) == pytest.approx(0.0)
    flat = np.full_like(real, 0.3)
    assert profile_layout_error(real, flat) == pytest.approx(1.0)
    assert profile_error_from_curves(real, flat)[0] == pytest.approx(1.0)


def test_z_profile_sampling_floor_by_hand() -> None:
    """Two real curves A = [1, 0], B = [0, 0] (mean [0.5, 0], sum |R - mean| = 0.5): a set with k of
    n copies of A scores |k/n - 1/2| / 0.5 = |2k - n| / n, so one volume always scores 1, and the
    mean over Binomial(n, 1/2) is the binomial's mean absolute deviation over n / 2."""
    from ctsgan.metrics.structure import z_profile_sampling_floor

    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])
    one = z_profile_sampling_floor([a, b], n=1, draws=200)
    assert one == {"mean": 1.0, "median": 1.0, "upper": 1.0}
    # n = 100: E|k - 50| = 3.9795 for Binomial(100, 1/2) -> mean error 3.9795 / 50 = 0.0796
    hundred = z_profile_sampling_floor([a, b], n=100, draws=20000, seed=3)
    assert hundred["mean"] == pytest.approx(0.0796, abs=0.005)
    assert hundred["median"] <= hundred["upper"]
    # n = 2: k = 1 (p 1/2) scores 0, k = 0 or 2 score 1 -> mean 1/2
    assert z_profile_sampling_floor([a, b], n=2, draws=20000, seed=4)["mean"] == pytest.approx(0.5, abs=0.03)
    # one real volume: every set is that volume, no floor
    assert z_profile_sampling_floor([a + np.array([[0.0, 0.5]])], n=5)["mean"] == 0.0


def test_z_profile_bootstrap_by_hand() -> None:
    """Real curves A = [1, 0], B = [0, 0] (mean [0.5, 0]); the generated set {A, B} scores 0 itself,
    but a resampled pair is A A or B B half the time (error 1) and A B otherwise (0): mean 1/2."""
    from ctsgan.metrics.structure import z_profile_bootstrap, z_profile_sampling_floor

    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])
    pair = z_profile_bootstrap([a, b], [a, b], draws=20000, seed=1)
    assert pair["error"] == 0.0
    assert pair["mean"] == pytest.approx(0.5, abs=0.02)
    assert pair["sd"] == pytest.approx(0.5, abs=0.02)  # a fair coin between 0 and 1
    assert (pair["low"], pair["high"]) == (0.0, 1.0)
    # a set of identical volumes does not move when resampled: its interval is its error
    same = z_profile_bootstrap([a, b], [np.array([[0.8, 0.0]])] * 7, draws=100)
    assert same["error"] == pytest.approx(0.6) and same["sd"] == pytest.approx(0.0, abs=1e-12)
    assert same["low"] == pytest.approx(0.6) and same["high"] == pytest.approx(0.6)
    # resampling the real scans themselves is the sampling floor at their own count, draw for draw
    real = [a, b, np.array([[0.2, 0.7]])]
    assert z_profile_bootstrap(real, real, draws=300, seed=5)["mean"] == pytest.approx(
        z_profile_sampling_floor(real, 3, draws=300, seed=5)["mean"])


def test_z_profile_bootstrap_narrows_with_set_size_and_rejects_bad_input(phantom_sets) -> None:
    from ctsgan.metrics.structure import z_profile_bootstrap, z_profiles

    real, fake = phantom_sets
    curves, fakes = [s.profile for s in real], [z_profiles(v) for v in fake]
    few = z_profile_bootstrap(curves, fakes[:2], draws=400)
    many = z_profile_bootstrap(curves, fakes[:2] * 8, draws=400)  # the same two volumes, 8 copies of each
    assert few["low"] <= few["error"] <= few["high"]
    assert many["error"] == pytest.approx(few["error"])  # one mean curve
    assert many["sd"] < few["sd"] / 2
    with pytest.raises(ValueError, match="generated curves of one shape"):
        z_profile_bootstrap(curves, [])
    with pytest.raises(ValueError, match="differ in shape"):
        z_profile_bootstrap(curves, [np.zeros((4, 3))])
    with pytest.raises(ValueError, match="draws"):
        z_profile_bootstrap(curves, fakes, draws=1)
    with pytest.raises(ValueError, match="interval"):
        z_profile_bootstrap(curves, fakes, interval=0.0)


def test_z_profile_sampling_floor_falls_with_set_size_and_rejects_bad_input(phantom_sets) -> None:
    from ctsgan.metrics.structure import z_profile_sampling_floor

    real, _ = phantom_sets
    curves = [s.profile for s in real]
    small, large = (z_profile_sampling_floor(curves, n, draws=500)["mean"] for n in (4, 64))
    assert small > 0.0
    assert large < small / 2  # 1 / sqrt(n): 16x the volumes, a quarter of the floor
    with pytest.raises(ValueError, match="one shape"):
        z_profile_sampling_floor([], n=4)
    with pytest.raises(ValueError, match="one shape"):
        z_profile_sampling_floor([np.zeros((4, 8)), np.zeros((4, 9))], n=4)
    with pytest.raises(ValueError, match="n and draws"):
        z_profile_sampling_floor(curves, n=0)
    with pytest.raises(ValueError, match="quantile"):
        z_profile_sampling_floor(curves, n=4, quantile=1.0)
