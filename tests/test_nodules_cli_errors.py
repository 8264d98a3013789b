"""`nodules inject / erase`: impossible options, wrong checkpoints and occupied outputs are one-line
errors that write nothing; nothing is dropped silently (issue #13)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ctsgan.cli import app
from ctsgan.data.dataset import Nodule, PreparedDataset, read_nodules, write_nodules
from ctsgan.nodules.train import train_inpainter
from test_inpaint import tiny_cfg, write_lung_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nodcli")
    data = write_lung_dataset(root / "data", n=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {"data": data}
        for model in ("injector", "eraser"):
            train_inpainter(model, tiny_cfg(model, checkpoint_every=1000), data, root / model, steps=1, progress=False)
            out[model] = root / model
    finally:
        torch.set_num_threads(threads)
    return out


def _error_line(res) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit)  # a clean exit, not a traceback
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def _inject(runs: dict[str, Path], out: Path, *extra: str, checkpoint: Path | None = None):  # type: ignore[no-untyped-def]
    ckpt = checkpoint if checkpoint is not None else runs["injector"]
    return CliRunner().invoke(app, ["nodules", "inject", "--checkpoint", str(ckpt), "--in", str(runs["data"]),
                                    "--out", str(out), *extra])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--diameter", "0", "--count", "1"], "diameter must be a finite number of mm > 0, got 0.0"),
        (["--diameter", "-5", "--count", "1"], "got -5.0"),
        (["--diameter", "nan", "--count", "1"], "got nan"),
        (["--diameter", "4", "--count", "-1"], "count must be >= 1 per volume, got -1"),
        (["--diameter", "4", "--count", "1", "--split", "trian"], "split must be one of"),
    ],
)
def test_impossible_inject_options_are_refused(runs: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    line = _error_line(_inject(runs, tmp_path / "out", *args))
    assert message in line
    assert not (tmp_path / "out").exists()


def test_inject_with_an_eraser_checkpoint_is_an_error_not_an_empty_dataset(runs: dict[str, Path], tmp_path: Path) -> None:
    line = _error_line(_inject(runs, tmp_path / "out", "--diameter", "4", "--count", "1", checkpoint=runs["eraser"]))
    assert "needs an injector checkpoint, got an eraser" in line
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_inject_refuses_an_existing_dataset_as_out(runs: dict[str, Path], tmp_path: Path) -> None:
    other = write_lung_dataset(tmp_path / "other", n=1, seed=3)
    before = (other / "manifest.csv").read_bytes(), (other / "nodules.csv").read_bytes()
    line = _error_line(_inject(runs, other, "--diameter", "4", "--count", "1"))
    assert f"{other} already holds a dataset (manifest.csv, nodules.csv, volumes)" in line
    assert ((other / "manifest.csv").read_bytes(), (other / "nodules.csv").read_bytes()) == before


def test_erase_with_a_centre_outside_the_volume_names_it(runs: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(runs["data"], data)
    nods = read_nodules(data / "nodules.csv")
    write_nodules(data / "nodules.csv", [*nods, Nodule("lung1", 40.0, 16.0, 16.0, 6.0, 6.0)])
    res = CliRunner().invoke(app, ["nodules", "erase", "--checkpoint", str(runs["eraser"]), "--in", str(data),
                                   "--out", str(tmp_path / "out")])
    line = _error_line(res)
    assert "nodules.csv: 1 nodule centre(s) outside their 32^3 volume" in line and "lung1 (40, 16, 16)" in line
    assert not (tmp_path / "out").exists()


def test_gan_checkpoints_and_unsafe_files_are_refused_in_one_line(runs: dict[str, Path], tmp_path: Path) -> None:
    from ctsgan.training.checkpoint import CHECKPOINT_FORMAT

    gan_run = tmp_path / "gan_run"
    (gan_run / "checkpoints").mkdir(parents=True)
    ckpt = gan_run / "checkpoints" / "step-00000001.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": "ctsgan", "config": {"size": 16}}, ckpt)
    line = _error_line(_inject(runs, tmp_path / "o1", "--diameter", "4", "--count", "1", checkpoint=gan_run))
    assert "not an injector/eraser run dir" in line
    line = _error_line(_inject(runs, tmp_path / "o2", "--diameter", "4", "--count", "1", checkpoint=ckpt))
    assert "a ctsgan checkpoint from `ctsgan train`, not an injector/eraser" in line
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"config": np.dtype("float32")}, unsafe)  # a numpy object: refused by a weights-only load
    line = _error_line(_inject(runs, tmp_path / "o3", "--diameter", "4", "--count", "1", checkpoint=unsafe))
    assert "not a readable checkpoint" in line and "weights_only" not in line
    from ctsgan.training.checkpoint import load_checkpoint

    with pytest.raises(ValueError, match="not a readable checkpoint") as err:
        load_checkpoint(unsafe)
    assert "weights_only" not in str(err.value) and len(str(err.value).splitlines()) == 1


def test_a_truncated_dataset_volume_is_named(runs: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(runs["data"], data)
    vol = data / "volumes" / "lung0.npy"
    vol.write_bytes(vol.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"lung0\.npy: unreadable volume"):
        PreparedDataset(data).load(0, mmap=False)
