"""The ``ctsgan`` entry point: every subcommand is listed, and ``--help`` stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    r = _run(
        "import sys, ctsgan.cli\n"
        "heavy = [m for m in ('torch', 'SimpleITK', 'pydicom', 'monai', 'matplotlib', 'skimage') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"`ctsgan --help` imports heavy modules at start-up: {r.stdout.strip()}"


def test_help_lists_every_subcommand() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ctsgan", "--help"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"}, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    for name in ("prepare", "phantom", "train", "generate", "evaluate", "nodules", "experiment", "bench", "quickstart"):
        assert name in r.stdout, f"`ctsgan --help` does not list {name!r}"
