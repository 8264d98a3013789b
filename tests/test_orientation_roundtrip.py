"""A real prepared cube written by the NIfTI writer and prepared again keeps its head-to-feet order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.geometry import make_cube
from ctsgan.data.prepare import prepare_dataset
from ctsgan.io.volumes import write_volume

CHEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest" / "LIDC-IDRI-0001.nii.gz"


@pytest.mark.skipif(not CHEST.exists(), reason=f"real chest scan not found at {CHEST}")
def test_written_cube_prepared_again_is_not_flipped(tmp_path: Path) -> None:
    first = prepare_dataset([CHEST], tmp_path / "a", size=32, progress=False)
    (row,) = first.prepared
    cube = np.load(tmp_path / "a" / row.path)
    write_volume(tmp_path / "w", "again", cube, row.spacing, fmt="nifti")
    second = prepare_dataset([tmp_path / "w" / "again.nii.gz"], tmp_path / "b", size=32, progress=False)
    assert second.skipped == []
    (row2,) = second.prepared
    again = np.load(tmp_path / "b" / row2.path)
    # prepare crops with a small margin and resamples, so compare with that step applied to the cube itself
    expected, _ = make_cube(cube.astype(np.float32), row.spacing, 32)
    flipped, _ = make_cube(cube[::-1].astype(np.float32), row.spacing, 32)
    assert not np.array_equal(expected, flipped)
    np.testing.assert_array_equal(again, expected)
    # and in plain numbers: much closer to the cube than to its mirror image
    err = np.abs(again.astype(np.float64) - cube).mean()
    err_flipped = np.abs(again.astype(np.float64) - cube[::-1]).mean()
    assert err < 0.8 * err_flipped, (err, err_flipped)
