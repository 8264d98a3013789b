"""Reading DICOM series and volume files: checked against SimpleITK's own series reader and pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ctsgan.data.series import (
    SeriesError,
    check_dicom_series,
    read_dicom_series,
    read_slice_header,
    read_volume_file,
    to_zyx_hu,
)


def _series_dirs(shared_ct_dir: Path) -> list[Path]:
    lidc = sorted(p for p in (shared_ct_dir / "lidc").glob("LIDC-IDRI-*/*/*") if p.is_dir())
    return [*lidc, shared_ct_dir / "lung-pet-ct-dx" / "Lung_Dx-A0001" / "chest-5mm"]


@pytest.mark.realdata
@pytest.mark.parametrize("which", [0, 1, 2])
def test_dicom_series_matches_simpleitk_series_reader(shared_ct_dir: Path, which: int) -> None:
    folder = _series_dirs(shared_ct_dir)[which]
    headers = [h for f in sorted(folder.glob("*.dcm")) if (h := read_slice_header(f)) is not None]
    series = check_dicom_series(headers)
    mine = read_dicom_series(series)

    # SimpleITK's own: GDCM series-ID helper + ImageSeriesReader
    uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    ref = reader.Execute()
    assert [Path(f).name for f in series.files] == [Path(f).name for f in reader.GetFileNames()]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(ref).astype(np.float32))
    np.testing.assert_allclose(mine.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(mine.GetOrigin(), ref.GetOrigin(), atol=1e-4)

    # head-first (z, y, x): slice 0 is the file with the highest z position, HU = pixel * slope + intercept
    hu, oriented = to_zyx_hu(mine)
    assert hu.shape == (len(series.files), 512, 512)
    head = pydicom.dcmread(series.files[-1])
    expect = head.pixel_array.astype(np.float64) * float(head.RescaleSlope) + float(head.RescaleIntercept)
    np.testing.assert_array_equal(hu[0], expect.astype(np.float32))
    assert oriented.GetDirection()[8] == pytest.approx(-1.0)
    assert oriented.GetSpacing()[2] == pytest.approx(series.spacing)


@pytest.mark.realdata
def test_series_positions_are_sorted_and_spacing_known(shared_ct_dir: Path) -> None:
    folder = _series_dirs(shared_ct_dir)[0]  # LIDC-IDRI-0001: 16 slices, 2.5 mm
    headers = [read_slice_header(f) for f in sorted(folder.glob("*.dcm"), reverse=True)]
    series = check_dicom_series([h for h in headers if h is not None])
    assert series.spacing == pytest.approx(2.5)
    assert series.positions[0] == pytest.approx(-132.5) and series.positions[-1] == pytest.approx(-95.0)
    assert list(series.positions) == sorted(series.positions)


def test_volume_file_checks(tmp_path: Path) -> None:
    vol = np.zeros((4, 5, 6), dtype=np.float32)
    vol[0] = -1000.0
    img = sitk.GetImageFromArray(vol)
    sitk.WriteImage(img, str(tmp_path / "ok.nii.gz"))
    out = read_volume_file(tmp_path / "ok.nii.gz")
    assert out.GetSize() == (6, 5, 4)
    vol[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(SeriesError, match="1 of 120 voxels are NaN"):
        read_volume_file(tmp_path / "nan.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(tmp_path / "blank.nii.gz"))
    with pytest.raises(SeriesError, match="every voxel is 0: a blank image"):
        read_volume_file(tmp_path / "blank.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 5, 6), np.int16)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(SeriesError, match="2D image"):
        read_volume_file(tmp_path / "flat.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 5, 6), np.int16), isVector=False), str(tmp_path / "4d.nii.gz"))
    with pytest.raises(SeriesError, match="4D image"):
        read_volume_file(tmp_path / "4d.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not nifti at all")
    with pytest.raises(SeriesError, match="could not read"):
        read_volume_file(tmp_path / "junk.nii")


def test_to_zyx_hu_flips_a_feet_first_volume(tmp_path: Path) -> None:
    vol = np.arange(4)[:, None, None] * np.ones((4, 3, 2))  # z index 0 is most inferior (identity direction)
    img = sitk.GetImageFromArray(vol.astype(np.float32))
    hu, oriented = to_zyx_hu(img)
    assert hu[:, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]
    # the world point of a voxel does not change
    p = img.TransformIndexToPhysicalPoint((1, 2, 3))
    assert oriented.TransformPhysicalPointToIndex(p) == (1, 2, 0)
