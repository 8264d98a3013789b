"""Generation at scale: batched volumes equal their batch-1 selves (to float rounding), parallel
writers, bounded queue, ``--resume`` after an interruption, atomic DICOM folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.generation import generate_volumes, load_generator, volume_name, volume_seed
from ctsgan.generation.generate import LoadedGenerator, VolumeWriter
from ctsgan.training.recipes import get_recipe
from ctsgan.training.recipes.ctsgan import render_volume, render_volumes
from training_helpers import one_thread, tiny_config, train_tiny_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run("ctsgan", tmp_path_factory.mktemp("scale"), steps=2)


@pytest.mark.parametrize("chunk", [4, 13, 100])
def test_batched_volumes_equal_batch_one_to_float_rounding(run_dir: Path, chunk: int) -> None:
    g = load_generator(run_dir)
    seeds = [volume_seed(5, i) for i in range(3)]
    dev = torch.device("cpu")
    one = torch.stack([render_volume(g.generator, 20, torch.Generator().manual_seed(s), dev, chunk=8) for s in seeds])  # type: ignore[arg-type]
    many = render_volumes(g.generator, 20, [torch.Generator().manual_seed(s) for s in seeds], dev, chunk=chunk)  # type: ignore[arg-type]
    assert many.shape == (3, 20, 16, 16)
    # not bit for bit: batched GEMMs (R_v over 3 volumes, G over chunks that cross volumes) may sum
    # in another order; measured <= 3e-10 on [-1, 1]
    assert float((one - many).abs().max()) < 1e-6
    # in int16 HU a volume can differ only where a value sits on a .5 rounding boundary
    hu_one, hu_many = g.sample_many(seeds[:1]), g.sample_many(seeds, chunk=chunk)
    assert int(np.abs(hu_one[0].astype(np.int32) - hu_many[0]).max()) <= 1


def test_default_sample_volumes_stacks_sample_volume() -> None:
    recipe = get_recipe("gan3d")
    cfg = tiny_config("gan3d")
    gen = recipe.build_networks(cfg).generator.eval()
    dev = torch.device("cpu")
    many = recipe.sample_volumes(gen, cfg, [3, 4], dev)
    assert torch.equal(many[1], recipe.sample_volume(gen, cfg, 4, dev))


def test_files_do_not_depend_on_batch_or_writers(run_dir: Path, tmp_path: Path) -> None:
    a = generate_volumes(run_dir, 5, tmp_path / "a", seed=2, fmt="npy", batch=1, writers=0)
    b = generate_volumes(run_dir, 5, tmp_path / "b", seed=2, fmt="nifti", batch=3, writers=2)
    from ctsgan.io.volumes import read_nifti

    assert [p.name for p in b] == [f"{volume_name(2, i)}.nii.gz" for i in range(5)]
    for pa, pb in zip(a, b, strict=True):
        assert int(np.abs(np.load(pa).astype(np.int32) - read_nifti(pb)[0]).max()) <= 1
    assert len(list((tmp_path / "b" / "previews").glob("*.png"))) == 5


def test_resume_after_an_interruption_makes_only_the_missing_volumes(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = generate_volumes(run_dir, 6, tmp_path / "full", seed=9, fmt="npy", batch=2, writers=0)
    out = tmp_path / "out"
    calls = {"n": 0}
    real_sample_many = LoadedGenerator.sample_many

    def dies_on_third_batch(self: LoadedGenerator, seeds: list[int], **kw: object) -> list[np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill between two batches
        return real_sample_many(self, seeds, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(LoadedGenerator, "sample_many", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        generate_volumes(run_dir, 6, out, seed=9, fmt="npy", batch=2, writers=2)
    monkeypatch.undo()
    done = sorted(p.name for p in out.glob("*.npy"))
    assert done == [f"{volume_name(9, i)}.npy" for i in range(4)]  # the two finished batches, complete
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    (out / f".{volume_name(9, 4)}.npy.x1.tmp.npy").write_bytes(b"half")  # what a kill mid-write leaves

    with pytest.raises(ValueError, match="pass --overwrite to replace them, --resume"):
        generate_volumes(run_dir, 6, out, seed=9, fmt="npy")
    with pytest.raises(ValueError, match="exclude each other"):
        generate_volumes(run_dir, 6, out, seed=9, fmt="npy", resume=True, overwrite=True)
    made = generate_volumes(run_dir, 6, out, seed=9, fmt="npy", resume=True, batch=2, writers=0)
    assert [p.name for p in made] == [f"{volume_name(9, i)}.npy" for i in (4, 5)]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished volumes not rewritten
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the stale temp file is gone
    for p in full:
        np.testing.assert_array_equal(np.load(out / p.name), np.load(p))
    assert len(list((out / "previews").glob("*.png"))) == 6
    assert generate_volumes(run_dir, 6, out, seed=9, fmt="npy", resume=True) == []  # nothing left to do


def test_dicom_series_folder_appears_whole_and_resume_skips_it(run_dir: Path, tmp_path: Path) -> None:
    (first,) = generate_volumes(run_dir, 1, tmp_path, seed=1, fmt="dicom", writers=0)
    assert len(list(first.glob("*.dcm"))) == 16 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in first.iterdir())
    made = generate_volumes(run_dir, 2, tmp_path, seed=1, fmt="dicom", resume=True, writers=1)
    assert [p.name for p in made] == [volume_name(1, 1)]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in first.iterdir()) == before
    again = generate_volumes(run_dir, 1, tmp_path, seed=1, fmt="dicom", overwrite=True, writers=0)
    assert len(list(again[0].glob("*.dcm"))) == 16


def test_writer_errors_name_the_volume_and_the_queue_is_bounded(tmp_path: Path) -> None:
    w = VolumeWriter(1, max_pending=2)
    vol = np.zeros((4, 4, 4), np.int16)
    w.submit(tmp_path, "good", vol, (1, 1, 1), "npy", False)
    w.submit(tmp_path, "bad", vol, (1, 1, 1), "tiff", False)
    assert len(w._pending) <= 2
    with pytest.raises(RuntimeError, match="bad: writing failed: ValueError: format must be one of"):
        w.close()
    assert os.path.exists(tmp_path / "good.npy") and w.written == [tmp_path / "good.npy"]


def test_bench_generate_throughput_keys() -> None:
    import json

    from typer.testing import CliRunner

    from ctsgan.cli import app

    r = CliRunner().invoke(app, ["bench", "generate", "--size", "32", "--repeats", "1", "-n", "3", "--format", "nifti",
                                 "--writers", "1", "--batch", "2", "--serial-baseline", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["format"] == "nifti" and res["batch"] == 2 and res["writers"] == 1
    for key in ("volumes_per_second_generator", "volumes_per_second_end_to_end", "volumes_per_second_end_to_end_serial"):
        assert res[key] > 0, key
    bad = CliRunner().invoke(app, ["bench", "generate", "--size", "32", "-n", "2", "--format", "tiff"])
    assert bad.exit_code == 1 and "format must be one of" in bad.output


def test_the_writer_module_never_imports_torch() -> None:
    """The file writers run in worker processes that import only ctsgan.generation.writer: it (and
    the package it sits in) must not pull in torch."""
    import subprocess
    import sys

    code = "import sys, ctsgan.generation.writer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
