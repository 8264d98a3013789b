"""`prepare` end to end: the real series, nodules on the nodule, resume, LUNA16 CSV, workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsgan.data.dataset import PreparedDataset, read_manifest, read_nodules
from ctsgan.data.discover import discover
from ctsgan.data.prepare import PrepareReport, job_fingerprint, prepare_dataset

REAL_SIZE = 64


@pytest.fixture(scope="session")
def real_prepared(shared_ct_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PrepareReport]:
    out = tmp_path_factory.mktemp("real") / "ds"
    return out, prepare_dataset([shared_ct_dir], out, size=REAL_SIZE, progress=False)


@pytest.mark.realdata
def test_all_real_series_prepared(real_prepared: tuple[Path, PrepareReport]) -> None:
    out, report = real_prepared
    assert report.skipped == []
    rows = read_manifest(out / "manifest.csv")
    assert sorted(r.patient_id for r in rows) == ["LIDC-IDRI-0001", "LIDC-IDRI-0003", "Lung_Dx-A0001"]
    by_pid = {r.patient_id: r for r in rows}
    lidc1 = by_pid["LIDC-IDRI-0001"]
    assert lidc1.orig_shape == (16, 512, 512) and lidc1.orig_spacing == pytest.approx((2.5, 0.703125, 0.703125))
    assert lidc1.source == "lidc-idri" and by_pid["Lung_Dx-A0001"].source == "lung_dx"
    for r in rows:
        vol = np.load(out / r.path)
        assert vol.shape == (REAL_SIZE,) * 3 and vol.dtype == np.int16
        assert vol.min() >= -1024  # padding clipped to air
        # scale and spacing are consistent with the crop box
        assert r.scale == pytest.approx(tuple(c / REAL_SIZE for c in r.crop_shape), rel=1e-5)
        assert r.spacing == pytest.approx(tuple(o * s for o, s in zip(r.orig_spacing, r.scale, strict=True)), rel=1e-5)
        assert r.spacing[1] == pytest.approx(r.spacing[2], rel=0.01)  # square in-plane box
        assert (out / "previews" / f"{r.id}.png").exists()
        # air outside the body at the cube's corners, body in the middle
        assert vol[:, :2, :2].max() < -900 and np.median(vol[:, 28:36, 28:36]) > -950
    assert {r.split for r in rows} == {"train", "validation", "test"}  # 3 patients: one each
    assert by_pid["LIDC-IDRI-0001"].has_nodule and by_pid["LIDC-IDRI-0003"].has_nodule
    assert not by_pid["Lung_Dx-A0001"].has_nodule  # its PASCAL-VOC boxes are not used


@pytest.mark.realdata
def test_lidc_nodules_fall_on_the_nodule(real_prepared: tuple[Path, PrepareReport]) -> None:
    out, _ = real_prepared
    ds = PreparedDataset(out)
    nodules = read_nodules(out / "nodules.csv")
    assert sorted(n.volume_id.split("_")[0] for n in nodules) == ["LIDC-IDRI-0001", "LIDC-IDRI-0003"]
    for n in nodules:
        row = next(r for r in ds.rows if r.id == n.volume_id)
        assert 28 < n.diameter_mm < 36  # both are ~3 cm nodules pooled over 4 readers
        assert n.diameter_vox == pytest.approx(n.diameter_mm / row.spacing[2], rel=1e-3)
        vol = ds.load(ds.ids.index(n.volume_id)).astype(np.float32)
        z, y, x = (round(c) for c in (n.z, n.y, n.x))
        assert -300 < vol[z, y, x] < 200, "centre is soft tissue"
        # surroundings: a ring in the axial plane at 1.5 nodule radii is mostly lung
        r_vox = 1.5 * n.diameter_vox / 2
        ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        ys = np.clip(np.rint(y + r_vox * np.sin(ang)).astype(int), 0, REAL_SIZE - 1)
        xs = np.clip(np.rint(x + r_vox * np.cos(ang)).astype(int), 0, REAL_SIZE - 1)
        ring = vol[z, ys, xs]
        assert np.mean(ring < -500) >= 0.5, f"ring around {n} is not lung: {ring}"


@pytest.mark.realdata
def test_rerun_reuses_and_continues(shared_ct_dir: Path, tmp_path: Path) -> None:
    lidc = shared_ct_dir / "lidc"
    out = tmp_path / "ds"
    first = prepare_dataset([lidc], out, size=16, progress=False)
    assert first.reused == 0 and len(first.prepared) == 2
    vols = {r.id: (out / r.path).read_bytes() for r in first.prepared}
    mtimes = {r.id: os.stat(out / r.path).st_mtime_ns for r in first.prepared}
    # a run killed after the volume but before its record: that series is done again
    killed = first.prepared[0].id
    (out / "records" / f"{killed}.json").unlink()
    second = prepare_dataset([lidc], out, size=16, progress=False)
    assert second.reused == 1
    assert [r for r in second.prepared] == [r for r in first.prepared]
    assert {r.id: (out / r.path).read_bytes() for r in second.prepared} == vols  # bit-identical
    other = first.prepared[1].id
    assert os.stat(out / first.prepared[1].path).st_mtime_ns == mtimes[other]  # not rewritten
    assert read_nodules(out / "nodules.csv") == first.nodules
    # another size (or other inputs) is other work: the fingerprint changes
    job = discover([lidc]).jobs[0]
    assert job_fingerprint(job, 16) != job_fingerprint(job, 17)


def _write_phantom_nifti(path: Path, centre_zyx: tuple[int, int, int], flip_z: bool) -> tuple[float, float, float]:
    """A 40 x 48 x 48 'chest' (body, two lungs, a 5-voxel soft-tissue nodule in the left lung) as NIfTI
    with spacing (2.5, 0.8, 0.8) mm, an origin, and (optionally) a z axis running head to feet;
    returns the nodule centre in world mm (x, y, z)."""
    d, h, w = 40, 48, 48
    zz, yy, xx = np.mgrid[:d, :h, :w]
    vol = np.full((d, h, w), -1000, np.int16)
    vol[((yy - 24) / 20) ** 2 + ((xx - 24) / 22) ** 2 < 1] = 40
    lungs = (((yy - 24) / 12) ** 2 + ((np.abs(xx - 24) - 10) / 7) ** 2 < 1) & (zz > 2) & (zz < d - 3)
    vol[lungs] = -850
    cz, cy, cx = centre_zyx
    vol[((zz - cz) * 2.5) ** 2 + ((yy - cy) * 0.8) ** 2 + ((xx - cx) * 0.8) ** 2 <= 4.0**2] = 30
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.8, 0.8, 2.5))
    img.SetOrigin((-20.0, 30.0, -100.0))
    if flip_z:
        img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
    sitk.WriteImage(img, str(path))
    return img.TransformIndexToPhysicalPoint((cx, cy, cz))


@pytest.mark.parametrize("flip_z", [False, True])
def test_luna_csv_nodule_lands_on_the_nodule(tmp_path: Path, flip_z: bool) -> None:
    src = tmp_path / "in"
    src.mkdir()
    x, y, z = _write_phantom_nifti(src / "case-01.nii.gz", (20, 22, 33), flip_z)
    (src / "annotations.csv").write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\ncase-01,{x},{y},{z},8.0\n")
    report = prepare_dataset([src], tmp_path / "out", size=32, progress=False)
    assert report.skipped == []
    (row,) = report.prepared
    (nod,) = report.nodules
    assert row.has_nodule and row.n_nodules == 1 and nod.diameter_mm == 8.0
    vol = np.load(tmp_path / "out" / row.path)
    assert vol[round(nod.z), round(nod.y), round(nod.x)] > -100
    # the mapping is the manifest's: cube = (orig + 0.5 - crop_start) / scale - 0.5, orig z head first
    oz = (39 - 20) if flip_z is False else 20
    expect = [(o + 0.5 - s) / k - 0.5 for o, s, k in zip((oz, 22, 33), row.crop_start, row.scale, strict=True)]
    assert [nod.z, nod.y, nod.x] == pytest.approx(expect, abs=1e-3)


def test_explicit_annotations_and_workers(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    worlds = [_write_phantom_nifti(src / f"p-{i}.nii.gz", (20, 22, 14 + 4 * i), False) for i in range(3)]
    csv = tmp_path / "luna.csv"
    csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "".join(
        f"p-{i},{x},{y},{z},6.5\n" for i, (x, y, z) in enumerate(worlds[:2])))
    serial = prepare_dataset([src], tmp_path / "a", size=16, annotations=csv, progress=False)
    parallel = prepare_dataset([src], tmp_path / "b", size=16, annotations=csv, workers=2, progress=False)
    assert [r.has_nodule for r in serial.prepared] == [True, True, False]
    assert serial.prepared == parallel.prepared and serial.nodules == parallel.nodules
    for r in serial.prepared:
        assert (tmp_path / "a" / r.path).read_bytes() == (tmp_path / "b" / r.path).read_bytes()


def test_default_excludes_skip_phantom_ground_truth(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "ground_truth").mkdir(parents=True)
    _write_phantom_nifti(src / "p-0.nii.gz", (20, 22, 14), False)
    _write_phantom_nifti(src / "ground_truth" / "p-0_healthy.nii.gz", (20, 22, 14), False)
    _write_phantom_nifti(src / "p-0_lung_mask.nii.gz", (20, 22, 14), False)
    report = prepare_dataset([src], tmp_path / "out", size=16, progress=False)
    assert [r.id for r in report.prepared] == ["p-0"] and report.skipped == []
    report = prepare_dataset([src], tmp_path / "out2", size=16, excludes=["p-*"], progress=False)
    assert report.prepared == [] and report.skipped == [(str(src), "no CT series or volume files found")]


def test_size_must_be_at_least_16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size must be >= 16"):
        prepare_dataset([tmp_path], tmp_path / "out", size=8, progress=False)
