"""Every kind of bad input gets one clear (path, reason) line; the good series is still prepared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from ctsgan.data.dataset import read_manifest, read_skipped
from ctsgan.data.prepare import PrepareReport, prepare_dataset

pytestmark = pytest.mark.realdata

SIZE = 16


def _good_dir(shared_ct_dir: Path) -> Path:
    return next(p for p in (shared_ct_dir / "lidc" / "LIDC-IDRI-0001").glob("*/*") if p.is_dir())


def _copy_series(shared_ct_dir: Path, dest: Path, edit: Callable[[pydicom.Dataset], None] | None = None) -> list[Path]:
    """Copy LIDC-IDRI-0003's 11 slices to ``dest`` under a new SeriesInstanceUID (so they never merge
    with the shared copy), applying ``edit`` to every slice; returns the files sorted by z."""
    src = next(p for p in (shared_ct_dir / "lidc" / "LIDC-IDRI-0003").glob("*/*") if p.is_dir())
    dest.mkdir(parents=True)
    uid = generate_uid()
    out = []
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        if edit is not None:
            edit(ds)
        ds.save_as(dest / f.name)
        out.append(dest / f.name)
    return sorted(out, key=lambda p: float(p.stem))


def _run(shared_ct_dir: Path, tmp_path: Path, *bad: Path) -> PrepareReport:
    out = tmp_path / "out"
    report = prepare_dataset([_good_dir(shared_ct_dir), *bad], out, size=SIZE, progress=False)
    # the good series was still prepared and written
    rows = read_manifest(out / "manifest.csv")
    assert [r.patient_id for r in rows] == ["LIDC-IDRI-0001"]
    vol = np.load(out / rows[0].path)
    assert vol.shape == (SIZE,) * 3 and vol.dtype == np.int16
    assert (out / "previews" / f"{rows[0].id}.png").exists()
    assert read_skipped(out / "skipped.csv") == report.skipped
    return report


def _only_reason(report: PrepareReport, path: Path) -> str:
    assert len(report.skipped) == 1, report.skipped
    got_path, reason = report.skipped[0]
    assert got_path == str(path)
    return reason


def test_truncated_dicom_file(shared_ct_dir: Path, tmp_path: Path) -> None:
    files = _copy_series(shared_ct_dir, tmp_path / "trunc")
    victim = files[5]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "trunc"), tmp_path / "trunc")
    assert reason.startswith("truncated DICOM file: pixel data has")
    assert victim.name in reason


def test_truncated_dicom_header(shared_ct_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "hdr").mkdir()
    src = sorted((shared_ct_dir / "lidc").glob("LIDC-IDRI-0003/*/*/*.dcm"))[0]
    (tmp_path / "hdr" / "cut.dcm").write_bytes(src.read_bytes()[:700])
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "hdr"), tmp_path / "hdr" / "cut.dcm")
    assert reason == "truncated DICOM file: it ends after 700 bytes, inside the header"


def test_non_dicom_file(shared_ct_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    rng = np.random.default_rng(0)
    (tmp_path / "junk" / "slice.dcm").write_bytes(rng.bytes(4096))
    (tmp_path / "junk" / "README").write_text("notes about this folder\n")  # text: ignored quietly
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "junk"), tmp_path / "junk" / "slice.dcm")
    assert reason == "not a DICOM file (no DICOM header)"


def test_non_ct_modality(shared_ct_dir: Path, tmp_path: Path) -> None:
    def to_mr(ds: pydicom.Dataset) -> None:
        ds.Modality = "MR"

    _copy_series(shared_ct_dir, tmp_path / "mr", to_mr)
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "mr"), tmp_path / "mr")
    assert reason == "not a CT series: Modality is MR"


def test_missing_slice(shared_ct_dir: Path, tmp_path: Path) -> None:
    files = _copy_series(shared_ct_dir, tmp_path / "gap")
    files[4].unlink()
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "gap"), tmp_path / "gap")
    assert reason.startswith("missing slice(s): gap of 5.00 mm")
    assert "where slices are 2.50 mm apart (about 1 missing)" in reason


def test_duplicated_slice(shared_ct_dir: Path, tmp_path: Path) -> None:
    files = _copy_series(shared_ct_dir, tmp_path / "dup")
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "dup" / "copy.dcm")
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "dup"), tmp_path / "dup")
    assert reason.startswith(f"duplicated slice at position {float(files[3].stem):.2f} mm")
    assert "copy.dcm" in reason


def test_inconsistent_spacing(shared_ct_dir: Path, tmp_path: Path) -> None:
    files = _copy_series(shared_ct_dir, tmp_path / "spacing")
    ds = pydicom.dcmread(files[5])
    pos = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + 0.8]
    ds.save_as(files[5])
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "spacing"), tmp_path / "spacing")
    assert reason == "inconsistent slice spacing: 1.700 to 3.300 mm (median 2.500 mm)"


def test_empty_folder(shared_ct_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "empty"), tmp_path / "empty")
    assert reason == "empty folder"


def test_2d_images(shared_ct_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((64, 64), np.int16)), str(tmp_path / "flat" / "xray.nii.gz"))
    files = _copy_series(shared_ct_dir, tmp_path / "one")
    for f in files[1:]:
        f.unlink()
    report = _run(shared_ct_dir, tmp_path, tmp_path / "flat", tmp_path / "one")
    assert sorted(report.skipped) == [
        (str(tmp_path / "flat" / "xray.nii.gz"), "2D image (64x64), not a volume"),
        (str(tmp_path / "one"), "2D image: a single slice, not a volume"),
    ]


def test_nan_filled_nifti(shared_ct_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "nan").mkdir()
    img = sitk.GetImageFromArray(np.full((8, 16, 16), np.nan, np.float32))
    sitk.WriteImage(img, str(tmp_path / "nan" / "scan.nii.gz"))
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "nan"), tmp_path / "nan" / "scan.nii.gz")
    assert reason == "every voxel is NaN or infinite"


def test_label_map_is_not_ct(shared_ct_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    labels = np.zeros((8, 16, 16), np.uint8)
    labels[2:6, 4:12, 4:12] = 3
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "labels" / "lungs.nii.gz"))
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "labels"), tmp_path / "labels" / "lungs.nii.gz")
    assert reason.startswith("no voxel below -500 HU (minimum 0): not CT in Hounsfield units")


def test_missing_input(shared_ct_dir: Path, tmp_path: Path) -> None:
    reason = _only_reason(_run(shared_ct_dir, tmp_path, tmp_path / "nope"), tmp_path / "nope")
    assert reason == "input does not exist"


def test_cli_prints_each_skip_and_exits_2(shared_ct_dir: Path, tmp_path: Path) -> None:
    from ctsgan.cli import app

    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.dcm").write_bytes(b"\x01\x02" * 100)
    out = tmp_path / "out"
    args = ["prepare", str(_good_dir(shared_ct_dir)), str(tmp_path / "empty"), str(tmp_path / "junk"),
            "--out", str(out), "--size", str(SIZE), "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert f"skipped: {tmp_path / 'empty'}: empty folder" in res.output
    assert f"skipped: {tmp_path / 'junk' / 'x.dcm'}: not a DICOM file (no DICOM header)" in res.output
    assert "prepared 1 volumes" in res.output
    assert len(read_manifest(out / "manifest.csv")) == 1
    # all good -> exit 0
    res = CliRunner().invoke(app, ["prepare", str(_good_dir(shared_ct_dir)), "--out", str(tmp_path / "o2"),
                                   "--size", str(SIZE), "--no-progress"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("kind", ["image_type", "orientation"])
def test_a_localizer_sharing_the_series_uid_is_left_out_not_the_series(
    shared_ct_dir: Path, tmp_path: Path, kind: str
) -> None:
    # issue #13: a scout with the axial series' SeriesInstanceUID used to drop the whole series
    files = _copy_series(shared_ct_dir, tmp_path / "axial")
    ds = pydicom.dcmread(files[5])
    ds.SOPInstanceUID = generate_uid()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal scout
    ds.ImagePositionPatient = [-250.0, 0.0, 100.0]
    if kind == "image_type":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout = tmp_path / "axial" / "scout.dcm"
    ds.save_as(scout)
    report = prepare_dataset([tmp_path / "axial"], tmp_path / "out", size=SIZE, progress=False)
    (row,) = report.prepared
    assert row.patient_id == "LIDC-IDRI-0003" and row.orig_shape[0] == len(files)
    assert [p for p, _ in report.skipped] == [str(scout)]
    assert report.skipped[0][1].startswith("localizer") and "left out of its series" in report.skipped[0][1]
    assert read_skipped(tmp_path / "out" / "skipped.csv") == report.skipped
