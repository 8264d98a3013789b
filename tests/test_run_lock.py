"""One training process per run dir (flock), a stale lock never blocks --resume, and --resume
refuses a different --config (issue #13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctsgan.cli import app
from ctsgan.training import train
from ctsgan.training.checkpoint import latest_checkpoint
from ctsgan.training.run_lock import RunDirBusyError, run_dir_lock
from training_helpers import one_thread, tiny_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[1] / "src"


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_stale_lock(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    data, run = make_tiny_dataset(), tmp_path / "run"
    train("ctsgan", tiny_config("ctsgan"), data, run, steps=1, progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ctsgan.training.run_lock import run_dir_lock\n"
         f"with run_dir_lock({str(run)!r}):\n    print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "2",
                                       "--no-progress"])
        assert res.exit_code == 1, res.output
        assert f"already in use by a running training process (pid {holder.pid}" in res.output
        assert latest_checkpoint(run).name == "step-00000001.pt"  # type: ignore[union-attr]
    finally:
        holder.send_signal(signal.SIGKILL)  # killed, as by the OOM killer: no clean-up runs
        holder.wait(timeout=30)
    assert (run / ".lock").exists()  # the file stays, but its lock died with the process
    train("ctsgan", None, data, run, steps=2, resume=True, progress=False)
    assert latest_checkpoint(run).name == "step-00000002.pt"  # type: ignore[union-attr]


def test_the_lock_is_held_while_training(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_tiny_dataset()
    with run_dir_lock(tmp_path / "run"), pytest.raises(RunDirBusyError, match="already in use"):
        train("ctsgan", tiny_config("ctsgan"), data, tmp_path / "run", steps=1, progress=False)
    assert latest_checkpoint(tmp_path / "run") is None


def test_resume_with_a_different_config_is_refused_with_the_diff(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data, run = make_tiny_dataset(), tmp_path / "run"
    cfg = tiny_config("ctsgan")
    train("ctsgan", cfg, data, run, steps=1, progress=False)
    other = tiny_config("ctsgan", lr_g=cfg.lr_g * 2, seed=cfg.seed + 1)
    with pytest.raises(ValueError, match=r"differs from the run's config in 2 key\(s\): lr_g: .* -> .*; seed: 0 -> 1"):
        train("ctsgan", other, data, run, steps=2, resume=True, progress=False)
    assert latest_checkpoint(run).name == "step-00000001.pt"  # type: ignore[union-attr]
    # the same config with other --steps is fine
    train("ctsgan", tiny_config("ctsgan", steps=99), data, run, steps=2, resume=True, progress=False)
    assert latest_checkpoint(run).name == "step-00000002.pt"  # type: ignore[union-attr]
