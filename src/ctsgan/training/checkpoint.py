"""Run-dir checkpoints: plain state dicts, atomic writes, keep the last k, exact RNG resume.

Layout: ``RUN/checkpoints/step-00000100.pt``. A checkpoint is a dict of tensors, numbers,
strings, lists and dicts (loaded with ``weights_only=True``)::

    format, model, step, config (dict), meta (dict: spacing, size, hu_window, world_size),
    generator, discriminator, opt_g, opt_d (state dicts),
    ranks: [ {rng: ..., sampler: ..., noise: ...} per rank ]
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctsgan.io.atomic import atomic_torch_save

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FORMAT = "ctsgan-checkpoint/1"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step-XXXXXXXX.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints of a run, oldest first (temp files ignored)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run dir (-> its latest checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{path}: run dir has no checkpoints in {path / CHECKPOINT_DIR}")
        return latest
    raise FileNotFoundError(f"{path}: no such checkpoint file or run dir")


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``, then delete all but the last
    ``keep_last`` (with the files kept beside them: ``step-XXXXXXXX.calibration.json``)."""
    path = checkpoint_path(run_dir, step)
    atomic_torch_save(path, state)
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
        old.with_suffix(".calibration.json").unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (``weights_only=True``); a broken file raises ValueError naming it."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated / foreign files: say which file and why
        raise ValueError(f"{path}: not a readable checkpoint ({load_error_reason(e)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a ctsgan checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return state


def load_error_reason(e: BaseException) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` refused a file.

    torch's own message for a weights-only refusal advises retrying with ``weights_only=False``,
    which would run arbitrary code from the file; that advice is never passed on.
    """
    import pickle

    text = str(e)
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
        return "it holds Python objects besides tensors and plain values; such files are not loaded, for safety"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:160] if lines else 'no details'}"


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy (global), torch CPU and CUDA RNG states as checkpoint-safe values."""
    # The legacy global numpy RNG is what third-party code draws from, so it is saved too.
    np_state: Any = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
