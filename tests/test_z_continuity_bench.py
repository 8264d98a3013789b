"""benchmarks/z_continuity.py: the neighbour-slice IoU behind docs/real_chest.md's streak / speckle numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("z_continuity_bench", REPO / "benchmarks" / "z_continuity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_neighbour_iou_by_hand(bench) -> None:
    """A repeated slice overlaps itself (1); a mask that alternates with its complement never (0);
    a 2x2 square moved by one column shares 2 of 6 voxels (1/3); empty pairs are left out."""
    sq = np.zeros((3, 4, 4), dtype=bool)
    sq[:, 1:3, 1:3] = True
    assert bench.neighbour_iou(sq) == 1.0
    alt = np.zeros((4, 4, 4), dtype=bool)
    alt[::2, :2] = True
    alt[1::2, 2:] = True
    assert bench.neighbour_iou(alt) == 0.0
    moved = np.zeros((2, 4, 4), dtype=bool)
    moved[0, 1:3, 0:2] = True
    moved[1, 1:3, 1:3] = True
    assert bench.neighbour_iou(moved) == pytest.approx(1 / 3)
    padded = np.concatenate([np.zeros((3, 4, 4), dtype=bool), sq])  # two empty pairs before the square
    assert bench.neighbour_iou(padded) == pytest.approx((0.0 + 1.0 + 1.0) / 3)


def test_summary_tells_a_repeated_slice_from_noise(bench) -> None:
    """One HU slice repeated along z scores 1 for every tissue it holds; white noise in the same
    ranges scores far lower; the spine window counts a bone block in every slice."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1000, 600, size=(64, 64, 64))
    repeated = np.repeat(noise[:1], 64, axis=0)
    rep, noi = bench.summarise([repeated]), bench.summarise([noise])
    for tissue in ("lung", "soft", "fat", "bone"):
        assert rep[tissue] == 1.0 and noi[tissue] < 0.3
    vol = np.full((8, 64, 64), -1000.0)
    vol[:, 40:44, 30:34] = 500.0  # a 16-voxel bone block in the window, every slice
    spine = bench.spine_window(vol)
    assert spine == {"slices_with_blob": 1.0, "voxels_per_slice": 16.0, "iou": 1.0}
