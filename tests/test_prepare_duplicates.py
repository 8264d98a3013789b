"""Inputs reached twice count once: a repeated input, a file inside a folder also given, the
annotation CSV given with --annotations and found again, a copied DICOM series (issue #13)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsgan.data.dataset import read_manifest, read_nodules
from ctsgan.data.discover import discover
from ctsgan.data.prepare import prepare_dataset


def _case(folder: Path, name: str) -> None:
    """A small chest-like NIfTI with one nodule and its LUNA16 row in ``folder/annotations.csv``."""
    d, h, w = 24, 32, 32
    zz, yy, xx = np.mgrid[:d, :h, :w]
    vol = np.full((d, h, w), -1000, np.int16)
    vol[((yy - 16) / 14) ** 2 + ((xx - 16) / 15) ** 2 < 1] = 40
    vol[(((yy - 16) / 8) ** 2 + ((np.abs(xx - 16) - 7) / 5) ** 2 < 1) & (zz > 2) & (zz < d - 3)] = -850
    vol[(zz - 12) ** 2 + (yy - 16) ** 2 + (xx - 9) ** 2 <= 4] = 30
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((1.0, 1.0, 2.0))
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(folder / f"{name}.nii.gz"))
    x, y, z = img.TransformIndexToPhysicalPoint((9, 16, 12))
    csv = folder / "annotations.csv"
    head = "" if csv.exists() else "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
    with open(csv, "a") as fh:
        fh.write(f"{head}{name},{x},{y},{z},4.0\n")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    _case(src, "case-01")
    _case(src, "case-02")
    return src


def test_annotations_given_and_found_count_once(data: Path, tmp_path: Path) -> None:
    report = prepare_dataset([data], tmp_path / "out", size=16, annotations=data / "annotations.csv", progress=False)
    assert report.skipped == []
    assert len(report.prepared) == 2
    assert len(read_nodules(tmp_path / "out" / "nodules.csv")) == 2  # was 4: every nodule twice


@pytest.mark.parametrize("second", ["same", "file_inside", "via_symlink"])
def test_an_input_reached_twice_is_prepared_once(data: Path, tmp_path: Path, second: str) -> None:
    other: Path = data
    if second == "file_inside":
        other = data / "case-01.nii.gz"
    elif second == "via_symlink":
        other = tmp_path / "link"
        other.symlink_to(data, target_is_directory=True)
    report = prepare_dataset([data, other], tmp_path / "out", size=16, progress=False)
    assert report.skipped == []
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert sorted(r.id for r in rows) == ["case-01", "case-02"]
    assert len(read_nodules(tmp_path / "out" / "nodules.csv")) == 2


def test_a_copied_dicom_series_counts_once_and_the_copy_is_listed(shared_ct_dir: Path, tmp_path: Path) -> None:
    series = next(p.parent for p in sorted((shared_ct_dir / "lidc" / "LIDC-IDRI-0003").rglob("*.dcm")))
    copy = tmp_path / "copy"
    shutil.copytree(series, copy)
    disc = discover([series, series, copy])
    (job,) = disc.jobs
    n = len(job.files)
    assert n == len(list(series.glob("*.dcm"))) and all(Path(f).parent == series for f in job.files)
    assert len(disc.skipped) == n
    assert all(Path(p).parent == copy and "duplicate of" in r and "SOPInstanceUID" in r for p, r in disc.skipped)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_prepare_out_that_cannot_be_a_folder_is_one_line(data: Path, tmp_path: Path, where: str) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    f = tmp_path / "f"
    f.write_text("x")
    out = f if where == "file" else f / "ds"
    res = CliRunner().invoke(app, ["prepare", str(data), "--out", str(out), "--size", "16", "--no-progress"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    (line,) = res.output.strip().splitlines()
    assert line == (f"error: --out {f} is a file, not a folder" if where == "file"
                    else f"error: --out {out}: cannot create the dataset folder (Not a directory)")


def test_a_symlinked_folder_inside_an_input_is_followed_and_a_loop_is_listed(tmp_path: Path) -> None:
    # issue #13: os.walk did not enter symlinked folders, so their scans were dropped without a word
    elsewhere = tmp_path / "elsewhere"
    _case(elsewhere / "real", "case-03")
    top = tmp_path / "in"
    _case(top, "case-01")
    (top / "linked").symlink_to(elsewhere / "real", target_is_directory=True)
    (top / "loop").symlink_to(top, target_is_directory=True)
    disc = discover([top])
    assert sorted(j.id for j in disc.jobs) == ["case-01", "case-03"]
    assert disc.skipped == [(str(top / "loop"), f"symlink to a folder already searched ({top}); not searched again")]


def test_a_header_fixed_in_place_is_prepared_again_not_reused(tmp_path: Path) -> None:
    # issue #13: the fingerprint was names + sizes, and a NIfTI header edit keeps the size
    src = tmp_path / "in"
    _case(src, "case-01")
    nii = src / "case-01.nii"
    img = sitk.ReadImage(str(src / "case-01.nii.gz"))
    (src / "case-01.nii.gz").unlink()
    sitk.WriteImage(img, str(nii))
    first = prepare_dataset([nii], tmp_path / "out", size=16, progress=False)
    size = nii.stat().st_size
    img.SetSpacing((1.0, 1.0, 3.0))  # the fix: slices were 3 mm apart
    sitk.WriteImage(img, str(nii))
    assert nii.stat().st_size == size
    second = prepare_dataset([nii], tmp_path / "out", size=16, progress=False)
    assert second.reused == 0
    assert first.prepared[0].orig_spacing[0] == 2.0 and second.prepared[0].orig_spacing[0] == 3.0
    assert read_manifest(tmp_path / "out" / "manifest.csv")[0].orig_spacing[0] == 3.0
