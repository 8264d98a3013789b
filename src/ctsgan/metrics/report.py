"""Writing the evaluation: ``metrics.json`` and a markdown table shaped like the paper's Table 1."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ctsgan.io.atomic import atomic_write_text


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN / inf become null, tuples lists, numpy scalars floats."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics_json(path: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(_clean(result), indent=2) + "\n")


def _pm(mean: float | None, std: float | None, missing: str = "n/a") -> str:
    if mean is None:
        return missing
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def table_markdown(result: dict[str, Any]) -> str:
    """Table 1 layout: rows real data, then each generated set; columns IS, FID (+ 2.5D FID).

    The real row's FID is the real/real reference (two disjoint real halves or sets).
    """
    real = result.get("real", {})

    def is_cell(entry: dict[str, Any]) -> str:
        if entry.get("is_mean") is None:
            return "n/a (no logits model)" if entry.get("is_reason") else "n/a"
        return _pm(entry.get("is_mean"), entry.get("is_std"))

    lines = [
        "| Data | IS | FID (slice, paper) | FID 2.5D |",
        "| --- | --- | --- | --- |",
        "| Real data | {} | {} | — |".format(
            is_cell(real),
            _pm(result.get("real_real_fid_slice_mean"), result.get("real_real_fid_slice_std")),
        ),
    ]
    for name, entry in result.get("fakes", {}).items():
        fid2 = entry.get("fid_2p5d")
        lines.append(
            "| {} | {} | {} | {} |".format(
                name,
                is_cell(entry),
                _pm(entry.get("fid_slice_mean"), entry.get("fid_slice_std")),
                f"{fid2:.2f}" if fid2 is not None else "n/a",
            )
        )
    notes = [
        "",
        "IS and FID: slice by slice over (real, generated) volume pairs, mean ± std (as the paper's Table 1);",
        "real data FID: between disjoint real volumes. FID 2.5D: whole sets, mean of axial/coronal/sagittal FIDs.",
    ]
    flagged = {n: e["memorization"]["n_flagged"] for n, e in result.get("fakes", {}).items() if e.get("memorization")}
    if flagged:
        notes.append("Near-copies of training volumes: " + ", ".join(f"{n}: {k}" for n, k in flagged.items()) + ".")
    return "\n".join(lines + notes) + "\n"


def write_table(path: str | Path, result: dict[str, Any]) -> Path:
    """Write :func:`table_markdown` atomically."""
    return atomic_write_text(path, table_markdown(result))
