"""Generation from a trained checkpoint: determinism per seed, formats, spacing, DICOM, --slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsgan.generation import generate_volumes, load_generator, volume_name, volume_seed
from ctsgan.io.dicom_writer import read_dicom_series, write_dicom_series
from ctsgan.io.volumes import read_nifti
from training_helpers import one_thread, tiny_config, train_tiny_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run("ctsgan", tmp_path_factory.mktemp("gen"), steps=3)


def test_volume_seed_depends_on_seed_and_index_only() -> None:
    assert volume_seed(3, 5) == volume_seed(3, 5)
    assert len({volume_seed(s, i) for s in range(4) for i in range(50)}) == 200


def test_deterministic_per_seed_and_independent_of_n(run_dir: Path, tmp_path: Path) -> None:
    a = generate_volumes(run_dir, 3, tmp_path / "a", seed=11, fmt="npy")
    b = generate_volumes(run_dir, 1, tmp_path / "b", seed=11, fmt="npy")
    c = generate_volumes(run_dir, 1, tmp_path / "c", seed=12, fmt="npy")
    assert [p.name for p in a] == [f"{volume_name(11, i)}.npy" for i in range(3)]
    va, vb, vc = np.load(a[0]), np.load(b[0]), np.load(c[0])
    np.testing.assert_array_equal(va, vb)
    assert va.dtype == np.int16 and va.shape == (16, 16, 16)
    assert not np.array_equal(va, vc)
    assert not np.array_equal(va, np.load(a[1]))
    assert sorted(p.name for p in (tmp_path / "a" / "previews").iterdir()) == [f"{volume_name(11, i)}.png" for i in range(3)]


def test_volume_matches_generator_output_in_hu(run_dir: Path, tmp_path: Path) -> None:
    from ctsgan.data.hu import unit_to_hu
    from ctsgan.training.recipes.ctsgan import render_volume

    g = load_generator(run_dir)
    expected = unit_to_hu(render_volume(g.generator, 16, torch.Generator().manual_seed(volume_seed(0, 0)),  # type: ignore[arg-type]
                                        torch.device("cpu"), chunk=32))
    (path,) = generate_volumes(run_dir, 1, tmp_path, seed=0, fmt="npy")
    np.testing.assert_array_equal(np.load(path), expected)


def test_nifti_keeps_spacing_and_slices_option(run_dir: Path, tmp_path: Path) -> None:
    (p,) = generate_volumes(run_dir, 1, tmp_path, seed=1, fmt="nifti", slices=40)
    arr, spacing = read_nifti(p)
    assert arr.shape == (40, 16, 16) and arr.dtype == np.int16
    assert spacing == (1.0, 1.0, 1.0)


def test_bad_choices_are_named(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"format must be one of \['nifti', 'dicom', 'npy'\]"):
        generate_volumes(run_dir, 1, tmp_path, fmt="png")
    with pytest.raises(ValueError, match="dtype must be one of"):
        generate_volumes(run_dir, 1, tmp_path, dtype="fp16")
    with pytest.raises(ValueError, match="size must be 16"):
        generate_volumes(run_dir, 1, tmp_path, size=32)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        generate_volumes(tmp_path / "missing", 1, tmp_path)


def test_dicom_series_round_trip_with_simpleitk(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.integers(-1024, 1500, size=(7, 12, 10)).astype(np.int16)
    spacing = (2.5, 0.7, 0.8)
    files = write_dicom_series(tmp_path / "s", vol, spacing, name="synthetic-x")
    assert len(files) == 7
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(tmp_path / "s"))
    assert len(names) == 7
    reader.SetFileNames(names)
    img = reader.Execute()
    np.testing.assert_allclose(img.GetSpacing(), (0.8, 0.7, 2.5), rtol=1e-6)
    # DICOM z points to the head; SimpleITK orders slices by increasing z, i.e. feet first.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img)[::-1], vol)
    back, sp = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(back, vol)
    assert np.allclose(sp, spacing)


def test_dicom_headers_are_synthetic_and_unique(tmp_path: Path) -> None:
    import pydicom

    vol = np.zeros((3, 4, 4), dtype=np.int16)
    a = write_dicom_series(tmp_path / "a", vol, (1.0, 1.0, 1.0))
    b = write_dicom_series(tmp_path / "b", vol, (1.0, 1.0, 1.0))
    ds = [pydicom.dcmread(p) for p in a + b]
    assert all(d.Modality == "CT" and list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"] for d in ds)
    assert all(d.SeriesDescription.startswith("SYNTHETIC") and d.BurnedInAnnotation == "NO" for d in ds)
    assert all(str(d.PatientName) == "SYNTHETIC" for d in ds)
    assert len({d.SOPInstanceUID for d in ds}) == 6
    assert len({d.SeriesInstanceUID for d in ds}) == 2 and len({d.StudyInstanceUID for d in ds}) == 2
    assert [d.InstanceNumber for d in ds[:3]] == [1, 2, 3]
    assert ds[0].file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage


def test_generate_dicom_from_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    (folder,) = generate_volumes(run_dir, 1, tmp_path / "d", seed=5, fmt="dicom")
    (npy,) = generate_volumes(run_dir, 1, tmp_path / "n", seed=5, fmt="npy")
    back, spacing = read_dicom_series(folder)
    np.testing.assert_array_equal(back, np.load(npy))
    assert spacing == (1.0, 1.0, 1.0)


def _superior_first(img: sitk.Image) -> np.ndarray:
    """SimpleITK image -> (z, y, x) array with its slices sorted by physical z, superior (largest LPS z) first."""
    arr = sitk.GetArrayFromImage(img)
    zs = [img.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(arr.shape[0])]
    return arr[np.argsort(zs)[::-1]]


def test_npy_nifti_and_dicom_of_one_seed_agree_in_world_space(run_dir: Path, tmp_path: Path) -> None:
    # issue #13: NIfTI was written with an identity direction, so slice 0 (the head) landed at the
    # lowest z and the NIfTI was the DICOM's mirror image in z.
    (npy,) = generate_volumes(run_dir, 1, tmp_path / "n", seed=7, fmt="npy", slices=12)
    (nii,) = generate_volumes(run_dir, 1, tmp_path / "i", seed=7, fmt="nifti", slices=12)
    (dcm,) = generate_volumes(run_dir, 1, tmp_path / "d", seed=7, fmt="dicom", slices=12)
    head_first = np.load(npy)
    assert not np.array_equal(head_first, head_first[::-1])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dcm)))
    from_dicom = _superior_first(reader.Execute())
    from_nifti = _superior_first(sitk.ReadImage(str(nii)))
    np.testing.assert_array_equal(from_dicom, head_first)
    np.testing.assert_array_equal(from_nifti, head_first)
    np.testing.assert_array_equal(read_nifti(nii)[0], head_first)


def test_cli_generate(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run_dir), "-n", "2", "--out", str(tmp_path),
                                   "--format", "npy", "--seed", "4"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == [f"{volume_name(4, i)}.npy" for i in range(2)]


def test_unit_to_hu_array_matches_the_shared_mapping() -> None:
    from ctsgan.data.hu import unit_to_hu
    from ctsgan.generation.generate import unit_to_hu_array

    x = torch.cat([torch.linspace(-1.2, 1.2, 20001), torch.tensor([-1.0, 1.0, 0.0])])
    np.testing.assert_array_equal(unit_to_hu_array(x, -1024.0, 600.0), unit_to_hu(x))


def test_generate_refuses_to_overwrite_volumes_unless_asked(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    (first,) = generate_volumes(run_dir, 1, tmp_path, seed=3, fmt="npy")
    first.write_bytes(b"kept")  # marks the file: a silent overwrite would replace it
    with pytest.raises(ValueError, match=rf"already holds 1 of the volumes to write \({first.name}\); pass --overwrite"):
        generate_volumes(run_dir, 2, tmp_path, seed=3, fmt="npy")
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run_dir), "-n", "2", "--out", str(tmp_path),
                                   "--format", "npy", "--seed", "3"])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        f"error: {tmp_path} already holds 1 of the volumes to write ({first.name}); "
        "pass --overwrite to replace them, --resume to keep them and make the rest, or choose another --out or --seed"]
    assert first.read_bytes() == b"kept" and not (tmp_path / f"{volume_name(3, 1)}.npy").exists()
    generate_volumes(run_dir, 1, tmp_path, seed=4, fmt="npy")  # other names in the same folder are fine
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run_dir), "-n", "2", "--out", str(tmp_path),
                                   "--format", "npy", "--seed", "3", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert np.load(first).shape == (16, 16, 16)


def test_generate_out_is_a_file_is_one_line(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    f = tmp_path / "f"
    f.write_text("x")
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run_dir), "-n", "1", "--out", str(f)])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [f"error: --out {f} is a file, not a folder"]


def test_a_nan_generator_output_is_an_error_not_int16_garbage(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctsgan.generation.generate import LoadedGenerator

    def nan_sample(self, seed, **kw):  # type: ignore[no-untyped-def]
        from ctsgan.generation.generate import unit_to_hu_array

        unit = torch.zeros(16, 16, 16)
        unit[3, 4, 5] = float("nan")
        return unit_to_hu_array(unit, *self.config.hu_window)

    monkeypatch.setattr(LoadedGenerator, "sample", nan_sample)
    with pytest.raises(ValueError, match=r"synthetic-s0-00000: 1 of 4096 generator output values are NaN or infinite; not written"):
        generate_volumes(run_dir, 1, tmp_path, seed=0, fmt="npy")
    assert list(tmp_path.glob("*.npy")) == []
