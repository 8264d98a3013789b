"""Atomic writes end with the permissions a plain open() gives (the umask applies), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from ctsgan.io.atomic import atomic_save_npy, atomic_write_text


@pytest.fixture
def umask_027() -> object:
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.usefixtures("umask_027")
def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_save_npy(tmp_path / "v.npy", np.zeros(3, np.int16))
    assert _mode(plain) == 0o640
    assert _mode(tmp_path / "a.txt") == 0o640 and _mode(tmp_path / "v.npy") == 0o640


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    p = tmp_path / "shared.txt"
    p.write_text("old")
    p.chmod(0o664)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o664


@pytest.mark.usefixtures("umask_027")
def test_current_umask_reads_without_changing_it() -> None:
    from ctsgan.io.atomic import current_umask

    assert current_umask() == 0o027 and current_umask() == 0o027
