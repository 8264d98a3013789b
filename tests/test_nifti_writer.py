"""NIfTI writing (``ctsgan.io.volumes.write_nifti``): SimpleITK writes the header, gzip level
:data:`NIFTI_GZIP_LEVEL` compresses; the file must read back exactly, the same bytes each time,
and leave no temp behind, also when compression fails."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ctsgan.io.volumes import HEAD_FIRST_DIRECTION, write_nifti


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(-1024, 1500, size=(7, 9, 11)).astype(np.int16)


def test_gzipped_nifti_reads_back_in_simpleitk_with_geometry(tmp_path: Path) -> None:
    import SimpleITK as sitk

    vol = _volume()
    path = write_nifti(tmp_path / "v.nii.gz", vol, (2.5, 0.7, 0.8))
    img = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol)
    assert img.GetSpacing() == pytest.approx((0.8, 0.7, 2.5))
    assert img.GetDirection() == pytest.approx(HEAD_FIRST_DIRECTION)
    with gzip.open(path, "rb") as fh:  # a plain gzip stream of a NIfTI-1 file (magic "n+1" at byte 344)
        assert fh.read(348)[344:347] == b"n+1"
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]


def test_same_volume_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No time stamp or temp name in the gzip header: content-hash caches and resumed runs see
    equal files, also when written years apart."""
    import time

    a = write_nifti(tmp_path / "a" / "v.nii.gz", _volume(), (1.0, 1.0, 1.0))
    later = time.time() + 3e8
    monkeypatch.setattr(time, "time", lambda: later)
    b = write_nifti(tmp_path / "b" / "v.nii.gz", _volume(), (1.0, 1.0, 1.0))
    assert a.read_bytes() == b.read_bytes()


def test_failed_compression_leaves_the_old_file_and_no_temps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "v.nii.gz"
    target.write_bytes(b"the user's file")

    def disk_full(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shutil.copyfileobj", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_nifti(target, _volume(), (1.0, 1.0, 1.0))
    assert target.read_bytes() == b"the user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]


def test_plain_nii_is_not_compressed(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "v.nii", _volume(), (1.0, 1.0, 1.0))
    assert path.read_bytes()[344:347] == b"n+1"
