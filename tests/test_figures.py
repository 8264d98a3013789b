"""Evaluation figures: the right cuts, readable PNGs whose size follows their content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctsgan.viz.figures import figure_grid, figure_memorization, figure_planes, plane_cut


def _vol(value_offset: float = 0.0) -> np.ndarray:
    return (np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14) - 800 + value_offset)


def test_plane_cut_takes_the_relative_position_in_each_plane() -> None:
    v = _vol()
    assert np.array_equal(plane_cut(v, "axial", 0.5), v[round(0.5 * 9)])
    assert np.array_equal(plane_cut(v, "coronal", 0.0), v[:, 0, :])
    assert np.array_equal(plane_cut(v, "sagittal", 1.0), v[:, :, 13])
    with pytest.raises(ValueError, match="axial"):
        plane_cut(v, "oblique", 0.5)


def test_planes_figure_grows_with_rows_and_columns(tmp_path: Path) -> None:
    one = figure_planes(tmp_path / "one.png", [("real", _vol())])
    two = figure_planes(tmp_path / "two.png", [("real", _vol()), ("CT-SGAN", _vol(50))], positions=(0.3, 0.7))
    w1, h1 = Image.open(one).size
    w2, h2 = Image.open(two).size
    assert h2 > 1.5 * h1 and w2 > 1.5 * w1
    pixels = np.asarray(Image.open(two).convert("L"))
    assert pixels.std() > 10  # images drawn, not a blank canvas


def test_grid_and_memorization_histograms(tmp_path: Path) -> None:
    slices = [np.full((8, 8), -1000.0 + 100 * i) for i in range(8)]
    grid = figure_grid(tmp_path / "grid.png", slices, [f"v{i}" for i in range(8)], "CT-SGAN", max_items=8)
    small = figure_grid(tmp_path / "small.png", slices[:2], ["a", "b"], "CT-SGAN")
    assert Image.open(grid).size[1] > Image.open(small).size[1]  # 2 rows vs 1
    with pytest.raises(ValueError):
        figure_grid(tmp_path / "none.png", [], [], "x")
    mem = {
        "feature_distance": [0.0, 5.0, 6.0], "train_nn_feature_distance": [4.0, 4.5, 7.0],
        "ssim": [1.0, 0.4, 0.5], "train_nn_ssim": [0.5, 0.55, 0.6],
        "feature_threshold": 2.0, "ssim_threshold": 0.95, "n_flagged": 1,
    }
    path = figure_memorization(tmp_path / "mem.png", mem, "CT-SGAN")
    assert Image.open(path).size[0] > 600


def test_z_profile_figure(tmp_path: Path) -> None:
    from ctsgan.viz.figures import figure_z_profiles

    real = np.linspace(0, 0.5, 4 * 16).reshape(4, 16)
    path = figure_z_profiles(tmp_path / "z.png", real, {"G": real[:, ::-1], "flat": np.full((4, 16), 0.2)},
                             errors={"G": 1.5, "flat": 1.0})
    assert Image.open(path).size[0] > 600
    assert np.asarray(Image.open(path).convert("L")).std() > 10
    with pytest.raises(ValueError, match="shape"):
        figure_z_profiles(tmp_path / "bad.png", real, {"G": real[:, :8]})
    with pytest.raises(ValueError):
        figure_z_profiles(tmp_path / "bad.png", real[:3], {})
