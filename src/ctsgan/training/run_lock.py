"""One training process per run dir: an exclusive ``flock`` on ``RUN/.lock``.

Two ``train`` processes on the same ``--out`` would both write checkpoints and logs and one
run would be lost. The first process holds the lock while it runs; a second one is refused
at once with a clear error naming the holder. A ``flock`` lock belongs to the open file, so it
dies with its process: a killed run never leaves a stale lock that blocks ``--resume`` (the
``.lock`` file itself stays, unlocked, and is reused).

Under torchrun only global rank 0 takes the lock (all ranks share the run dir).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class RunDirBusyError(FileExistsError):
    """Another process holds the run dir's lock."""


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (created) for the duration of the block.

    Args:
        run_dir: the run dir.
        enabled: False: do nothing (non-zero ranks).

    Raises:
        RunDirBusyError: another live process holds the lock.
    """
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fh = open(path, "a+")  # noqa: SIM115 (the lock lives as long as the open file)
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunDirBusyError(
                f"{run_dir}: already in use by a running training process ({holder}); wait for it to finish "
                "or choose another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock
