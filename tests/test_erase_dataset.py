"""`nodules erase` builds the nodule-free training set: classical eraser without a checkpoint,
an empty nodules.csv, the same manifest under new paths, and erased.csv recording what was done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.dataset import PreparedDataset, read_manifest, read_nodules
from ctsgan.nodules.apply import erase_dataset
from ctsgan.nodules.classical import classical_erase, classical_erase_extent_mm
from ctsgan.nodules.erase_record import ERASED_TOLERANCE_HU, ErasedNodule, erased_stats, read_erased
from test_inpaint import write_lung_dataset


@pytest.fixture(scope="module")
def lung_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lung_dataset(tmp_path_factory.mktemp("lungds"), n=2)


def test_classical_erase_dataset_writes_a_nodule_free_copy_and_a_record(lung_ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    rep = erase_dataset(lung_ds, out, None, progress=False)
    src = PreparedDataset(lung_ds)
    assert rep.method == "classical" and rep.nodules_before == 6 and rep.nodules_after == 0
    assert read_nodules(out / "nodules.csv") == []
    rows = read_manifest(out / "manifest.csv")
    assert [r.id for r in rows] == src.ids and not any(r.has_nodule for r in rows)
    erased = read_erased(out / "erased.csv")
    assert len(erased) == 6 and {e.method for e in erased} == {"classical"}
    for e in erased:
        assert e.hu_before > -300  # the region held the 30 HU nodule
        assert abs(e.hu_after - e.hu_parenchyma) <= ERASED_TOLERANCE_HU and e.erased_ok
        assert e.hu_parenchyma < -700 and e.parenchyma_voxels > 20
    # beyond every nodule's extent the volume is untouched (bit-identical)
    clean = PreparedDataset(out)
    for i in range(len(src)):
        a, b = np.asarray(src.load(i)), np.asarray(clean.load(i))
        far = np.ones(a.shape, dtype=bool)
        for n in src.nodules(src.ids[i]):
            g = np.ogrid[:32, :32, :32]
            d = np.sqrt(sum((gg - c) ** 2 for gg, c in zip(g, (n.z, n.y, n.x), strict=True)))
            far &= d > classical_erase_extent_mm(n.diameter_mm, (1.0, 1.0, 1.0)) + 1.0
        assert np.array_equal(a[far], b[far]) and not np.array_equal(a, b)


def test_erased_stats_flags_a_region_that_is_not_erased() -> None:
    rng = np.random.default_rng(0)
    vol = (-850 + rng.normal(0, 20, (24, 24, 24))).astype(np.int16)
    vol[10:15, 10:15, 10:15] = 40
    lung = np.ones(vol.shape, dtype=bool)
    kept: ErasedNodule = erased_stats("v", vol, vol, lung, (12, 12, 12), 5.0, (1.0, 1.0, 1.0), 6.0, "none")
    assert kept.hu_after > -100 and not kept.erased_ok and kept.diff_hu > 700


def test_classical_erase_with_lung_mask_keeps_the_chest_wall() -> None:
    """A nodule touching the wall: with the lung mask, wall voxels stay soft tissue."""
    vol = np.full((24, 24, 24), 40, dtype=np.int16)
    vol[:, :, :12] = -850  # lung on the left half, wall (40 HU) on the right
    lung = vol < -500
    nodule = ((12.0, 12.0, 11.0), 6.0)
    out = classical_erase(vol, (1.0, 1.0, 1.0), [nodule], seed=0, lung=lung)
    assert np.all(out[:, :, 14:] == 40)  # the wall beyond the lung's smoothed edge is untouched
    plain = classical_erase(vol, (1.0, 1.0, 1.0), [nodule], seed=0)
    assert plain[12, 12, 14] < -500  # without the mask the wall is turned into lung


def test_cli_erase_without_checkpoint_says_classical(lung_ds: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    res = CliRunner().invoke(app, ["nodules", "erase", "--data", str(lung_ds), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "eraser: classical" in res.output and "6 of 6 erased regions within 100 HU" in res.output
    assert (tmp_path / "c" / "erased.csv").exists()
    res = CliRunner().invoke(app, ["nodules", "erase", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])
    assert res.exit_code == 1 and "nowhere" in res.output
