"""The shared contracts: HU mapping, atomic writes, the prepared-dataset layout, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.config import Config, ConfigError
from ctsgan.data.dataset import PreparedDataset, read_manifest, read_nodules
from ctsgan.data.hu import hu_to_unit, unit_to_hu
from ctsgan.io import atomic
from ctsgan.io.volumes import read_volume, write_volume


def test_hu_window_maps_ends_to_minus_one_and_one() -> None:
    hu = np.array([-3024, -1024, -212, 600, 2000], dtype=np.int16)
    u = hu_to_unit(hu)
    np.testing.assert_allclose(u, [-1.0, -1.0, 0.0, 1.0, 1.0], atol=1e-6)
    t = hu_to_unit(torch.tensor(hu))
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), u, atol=1e-6)


def test_hu_roundtrip_within_window_is_exact_to_one_hu() -> None:
    hu = np.arange(-1024, 601, 7, dtype=np.int16)
    back = unit_to_hu(hu_to_unit(hu))
    assert back.dtype == np.int16
    assert np.abs(back.astype(int) - hu.astype(int)).max() <= 1


def test_bad_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="hi > lo"):
        hu_to_unit(np.zeros(3), lo=10, hi=0)


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic.atomic_write_bytes(target, b"good")

    def boom(fh: object) -> None:
        fh.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        atomic.atomic_write_with(target, boom)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temp file left behind


def test_tiny_dataset_roundtrips_through_the_contract(make_tiny_dataset) -> None:
    root = make_tiny_dataset(n=6, size=16)
    rows = read_manifest(root / "manifest.csv")
    assert len(rows) == 6 and rows[0].orig_shape == (16, 16, 16)
    assert rows[0].spacing == (1.0, 1.0, 1.0) and rows[0].has_nodule and not rows[1].has_nodule
    ds = PreparedDataset(root, split="train")
    assert len(ds) == 4 and ds.size == 16
    vol = ds.load(0)
    assert vol.dtype == np.int16 and vol.shape == (16, 16, 16)
    assert isinstance(vol, np.memmap)
    nods = read_nodules(root / "nodules.csv")
    assert {n.volume_id for n in nods} == {"tiny000", "tiny002", "tiny004"}
    assert ds.nodules("tiny000")[0].diameter_vox == 3.0


def test_dataset_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        PreparedDataset(tmp_path)
    (tmp_path / "manifest.csv").write_text("id,source\nx,y\n")
    with pytest.raises(ValueError, match="no column"):
        PreparedDataset(tmp_path)


@pytest.mark.parametrize("fmt", ["nifti", "npy"])
def test_volume_write_read_keeps_values_and_spacing(tmp_path: Path, fmt: str) -> None:
    import SimpleITK as sitk

    vol = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 60).astype(np.int16)
    path = write_volume(tmp_path, "v", vol, (2.5, 0.7, 0.8), fmt=fmt)
    np.testing.assert_array_equal(read_volume(path), vol)
    if fmt == "nifti":
        img = sitk.ReadImage(str(path))
        np.testing.assert_allclose(img.GetSpacing(), (0.8, 0.7, 2.5), rtol=1e-6)
        assert img.GetSize() == (6, 5, 4)


class _Toy(Config):
    lr: float = 1e-3
    steps: int = 10


def test_config_error_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match=r"lr: .*fast"):
        _Toy.from_yaml(p)
    p.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match="stepz"):
        _Toy.from_yaml(p)
    assert _Toy.from_dict({"steps": 3}).steps == 3
