"""The chest phantom: API contract, determinism, tissue classes at their HU, nodules, files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.phantom import (
    DIRECTION,
    LognormalNoduleStats,
    Phantom,
    Tissue,
    make_phantom,
    phantom_id,
    write_phantoms,
)


@pytest.fixture(scope="module")
def ph32() -> Phantom:
    # nodules of ~16 mm so that they cover whole voxels of 11 mm
    return make_phantom(32, 5, nodules=True, nodule_stats=LognormalNoduleStats(median_mm=16.0, sigma=0.15))


def test_contract_shapes_dtypes(ph32: Phantom) -> None:
    p = ph32
    assert p.hu.shape == p.healthy.shape == p.lung_mask.shape == p.nodule_mask.shape == p.labels.shape == (32, 32, 32)
    assert p.hu.dtype == np.int16 and p.healthy.dtype == np.int16
    assert p.lung_mask.dtype == bool and p.nodule_mask.dtype == bool
    # a chest: 250-340 mm in z (lungs and upper abdomen), 340-420 mm in-plane
    assert 250 <= p.spacing_zyx[0] * 32 <= 340
    assert 340 <= p.spacing_zyx[1] * 32 <= 420 and p.spacing_zyx[1] == p.spacing_zyx[2]


def test_same_seed_bit_exact_other_seed_differs() -> None:
    a = make_phantom(16, 11)
    b = make_phantom(16, 11)
    c = make_phantom(16, 12)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.lung_mask, b.lung_mask)
    assert not np.array_equal(a.hu, c.hu)
    assert a.patient != c.patient  # the patients differ, not only the noise
    # tuple seeds are what write_phantoms uses
    assert not np.array_equal(make_phantom(16, (11, 0)).hu, make_phantom(16, (11, 1)).hu)


def test_without_nodules_healthy_is_hu() -> None:
    p = make_phantom(16, 3)
    assert np.array_equal(p.hu, p.healthy)
    assert not p.nodule_mask.any() and p.nodules == []


def test_nodules_inside_lungs_and_only_change_their_surroundings(ph32: Phantom) -> None:
    p = ph32
    assert p.nodules, "nodules=True placed no nodule"
    assert p.nodule_mask.any()
    # nodule voxels lie in the lungs
    assert p.lung_mask[p.nodule_mask].mean() > 0.9
    for (z, y, x), d in p.nodules:
        assert 3.0 <= d <= 30.0
        assert p.nodule_mask[round(z), round(y), round(x)]
    # healthy and nodule versions share the noise: identical far from nodules
    diff = p.hu != p.healthy
    from scipy import ndimage

    near = ndimage.binary_dilation(p.nodule_mask, iterations=3)
    assert not diff[~near].any()
    # the nodule is solid tissue: brighter than the lung it replaced
    assert p.hu[p.nodule_mask].mean() > p.healthy[p.nodule_mask].mean() + 200


def test_nodule_stats_argument_sets_sizes() -> None:
    stats = LognormalNoduleStats(median_mm=20.0, sigma=0.01, mean_extra=0.0, max_count=1)
    p = make_phantom(32, 7, nodules=True, nodule_stats=stats)
    assert len(p.nodules) == 1
    assert p.nodules[0][1] == pytest.approx(20.0, rel=0.05)


def test_tissue_classes_at_their_hu() -> None:
    p = make_phantom(64, 2)
    hu, lab = p.hu.astype(np.float64), p.labels
    # lungs (with their vessels and partial-volume edges, as a real lung mask): real -814 mean, -865 median
    lung = hu[p.lung_mask]
    assert -900 <= np.median(lung) <= -820
    assert -880 <= lung.mean() <= -740
    assert (lab == Tissue.HEART).any() and (lab == Tissue.GREAT_VESSEL).any()
    # heart and aorta: soft tissue or contrast-enhanced blood, not fat, not bone
    assert 0 <= hu[lab == Tissue.HEART].mean() <= 300
    assert 0 <= hu[lab == Tissue.GREAT_VESSEL].mean() <= 300
    assert -130 <= hu[lab == Tissue.FAT].mean() <= -40
    # the spine: bone in the posterior half of the midline columns; cortex and posterior
    # elements >= 300 HU, marrow of the vertebral bodies 150-300 HU as in real vertebrae
    s = p.hu.shape[2]
    x = (np.arange(s) + 0.5) * p.spacing_zyx[2] - s * p.spacing_zyx[2] / 2
    assert p.patient is not None
    mid = np.abs(x - p.patient.body_shift_x) < 12.0
    spine = (lab == Tissue.BONE) & mid[None, None, :]
    spine[:, : s // 2, :] = False
    assert spine.sum() > 200
    assert np.percentile(hu[spine], 90) >= 300
    assert (hu[spine] >= 300).mean() >= 0.2
    assert 200 <= hu[spine].mean() <= 600
    assert -1024 <= hu[lab == Tissue.AIR].mean() <= -900


def test_bad_size_raises() -> None:
    with pytest.raises(ValueError, match=">= 16"):
        make_phantom(8, 0)


def test_write_phantoms_files_and_world_coordinates(tmp_path: Path) -> None:
    import SimpleITK as sitk

    out = tmp_path / "ph"
    paths = write_phantoms(out, 2, 16, 9, nodules=True, nodule_stats=LognormalNoduleStats(median_mm=15.0, sigma=0.1))
    assert [p.name for p in paths] == [f"{phantom_id(9, i)}.nii.gz" for i in range(2)]
    rows = list(csv.DictReader(open(out / "annotations.csv")))
    assert rows and set(rows[0]) == {"seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"}
    for i, path in enumerate(paths):
        pid = phantom_id(9, i)
        ph = make_phantom(16, (9, i), nodules=True, nodule_stats=LognormalNoduleStats(median_mm=15.0, sigma=0.1))
        img = sitk.ReadImage(str(path))
        assert np.array_equal(sitk.GetArrayFromImage(img), ph.hu)
        assert np.allclose(img.GetSpacing(), ph.spacing_zyx[::-1], rtol=1e-5)
        assert np.allclose(img.GetDirection(), DIRECTION)
        mask = sitk.ReadImage(str(out / "ground_truth" / f"{pid}_nodule_mask.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(mask).astype(bool), ph.nodule_mask)
        healthy = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ground_truth" / f"{pid}_healthy.nii.gz")))
        assert np.array_equal(healthy, ph.healthy)
        lungs = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ground_truth" / f"{pid}_lung_mask.nii.gz")))
        assert np.array_equal(lungs.astype(bool), ph.lung_mask)
        # each annotation's world point maps (via SimpleITK's geometry) onto its nodule
        mine = [r for r in rows if r["seriesuid"] == pid]
        assert len(mine) == len(ph.nodules)
        for r in mine:
            ix, iy, iz = img.TransformPhysicalPointToIndex((float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])))
            assert ph.nodule_mask[iz, iy, ix]
        # z index runs head -> feet: world z (LPS, superior +) decreases with the index
        assert img.TransformIndexToPhysicalPoint((0, 0, 1))[2] < img.TransformIndexToPhysicalPoint((0, 0, 0))[2]


def test_write_phantoms_workers_match_serial(tmp_path: Path) -> None:
    import SimpleITK as sitk

    a = write_phantoms(tmp_path / "a", 2, 16, 4, workers=1)
    b = write_phantoms(tmp_path / "b", 2, 16, 4, workers=2)
    for pa, pb in zip(a, b, strict=True):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(pa))), sitk.GetArrayFromImage(sitk.ReadImage(str(pb))))
    assert not (tmp_path / "a" / "annotations.csv").exists()


def test_cli_writes_volumes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    res = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path / "o"), "-n", "1", "--size", "16", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "phantom-2-0000.nii.gz").exists()
    bad = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path / "o"), "-n", "1", "--size", "8"])
    assert bad.exit_code == 2 and ">= 16" in bad.output


def test_lidc_stats_plug_in() -> None:
    lidc = pytest.importorskip("ctsgan.nodules.lidc_stats")
    stats = lidc.load_lidc_stats()
    p = make_phantom(32, 1, nodules=True, nodule_stats=stats)
    # the same draws the generator made, from the same stream: count and diameters match
    import numpy as _np

    rng = _np.random.default_rng(_np.random.SeedSequence(1).spawn(4)[2])
    count = stats.sample_count(rng)
    want = sorted(stats.sample_diameters_mm(rng, count).tolist(), reverse=True) if count else []
    got = [d for _, d in p.nodules]
    assert got == pytest.approx(want[: len(got)])
