"""Finding series under the inputs."""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsgan.data.discover import discover, source_name


@pytest.mark.parametrize(
    ("pid", "expect"),
    [("LIDC-IDRI-0001", "lidc-idri"), ("Lung_Dx-A0001", "lung_dx"), ("phantom-0-0003", "phantom"),
     ("100012", "nlst"), ("1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260", "nlst")],
)
def test_source_name(pid: str, expect: str) -> None:
    assert source_name(pid, "NLST") == expect


@pytest.mark.realdata
def test_real_tree(shared_ct_dir: Path) -> None:
    disc = discover([shared_ct_dir])
    assert disc.skipped == []  # README.md, ATTRIBUTION, the VOC xmls: quietly ignored
    assert [j.patient_id for j in disc.jobs] == ["LIDC-IDRI-0001", "LIDC-IDRI-0003", "Lung_Dx-A0001"]
    lidc1, lidc3, dx = disc.jobs
    assert len(lidc1.headers) == 16 and len(lidc3.headers) == 11 and len(dx.headers) == 64
    assert [Path(x).name for x in lidc1.xmls] == ["69.xml"] and dx.xmls == ()  # annotation/ is another folder
    assert lidc1.key == lidc1.headers[0].series_uid
    assert lidc1.id == discover([shared_ct_dir / "lidc"]).jobs[0].id  # ids do not depend on the input root
    with ProcessPoolExecutor(2) as ex:
        par = discover([shared_ct_dir / "lidc"], executor=ex)
    assert [j.id for j in par.jobs] == [lidc1.id, lidc3.id] and par.jobs[0].headers == lidc1.headers


@pytest.mark.realdata
def test_series_split_over_folders_is_one_series(shared_ct_dir: Path, tmp_path: Path) -> None:
    src = next(p for p in (shared_ct_dir / "lidc" / "LIDC-IDRI-0003").glob("*/*") if p.is_dir())
    files = sorted(src.glob("*.dcm"))
    for i, f in enumerate(files):
        (tmp_path / f"part{i % 2}").mkdir(exist_ok=True)
        shutil.copy(f, tmp_path / f"part{i % 2}" / f.name)
    (tmp_path / "DICOMDIR").write_bytes(b"")  # index files are not series
    disc = discover([tmp_path])
    assert len(disc.jobs) == 1 and len(disc.jobs[0].headers) == 11
    assert disc.jobs[0].input_path == str(tmp_path)


def _nifti(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(path))


def test_volumes_excludes_and_annotation_csv(tmp_path: Path) -> None:
    _nifti(tmp_path / "a" / "case-1.nii.gz")
    _nifti(tmp_path / "a" / "case-1_seg.nii.gz")
    _nifti(tmp_path / "a" / "ground_truth" / "case-1_healthy.nii.gz")
    _nifti(tmp_path / "a" / "skipme" / "case-2.nii")
    _nifti(tmp_path / "b" / "case-1.mha")  # same stem elsewhere: gets a distinct id
    (tmp_path / "a" / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\ncase-1,1,2,3,4\n")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    disc = discover([tmp_path / "a", tmp_path / "b"], excludes=["skipme"])
    assert [Path(j.files[0]).relative_to(tmp_path).as_posix() for j in disc.jobs] == ["a/case-1.nii.gz", "b/case-1.mha"]
    ids = [j.id for j in disc.jobs]
    assert ids[0] == "case-1" and ids[1].startswith("case-1_") and len(set(ids)) == 2
    assert disc.annotation_csvs == [str(tmp_path / "a" / "annotations.csv")]
    assert [len(j.luna) for j in disc.jobs] == [1, 1]  # seriesuid matches the file stem
    assert disc.jobs[0].source == "case"
