"""Training logs of a run dir: ``metrics.jsonl`` (one JSON object per logged step) + TensorBoard.

``metrics.jsonl`` is append-only while training (a killed run loses at most its last line,
which readers skip); on resume it is rewritten atomically without the lines past the resumed
step, so the log of a resumed run equals the log of a run that never stopped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ctsgan.io.atomic import atomic_path, atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete records of ``run_dir/metrics.jsonl`` (a truncated last line is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunLogger:
    """Scalars to JSONL and TensorBoard (only the main rank writes; others are no-ops).

    Args:
        run_dir: the run directory.
        enabled: False on non-main ranks.
        tensorboard: also write TensorBoard events to ``run_dir/tensorboard``.
        resume_step: drop JSONL records with ``step > resume_step`` (None: fresh run).
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resume_step: int | None = None) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self._tb: Any = None
        if not enabled:
            return
        path = run_dir / METRICS_FILE
        if resume_step is None:
            atomic_write_text(path, "")
        else:
            kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(path, "a")  # noqa: SIM115 (kept open for the run)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, scalars: dict[str, float], **extra: Any) -> None:
        if not self.enabled:
            return
        rec = {"step": step, **extra, **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def save_preview_grid(path: Path, volumes: list[np.ndarray], spacing_zyx: tuple[float, float, float]) -> Path:
    """One PNG: a tri-planar row per (z, y, x) HU volume, stacked top to bottom."""
    from PIL import Image

    from ctsgan.viz.preview import triplanar

    rows = [triplanar(v, spacing_zyx) for v in volumes]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]))) for r in rows]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
    return path
