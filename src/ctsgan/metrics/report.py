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


def _num(value: float | None, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.2f}"


STRUCTURE_COLUMNS = (
    ("z_profile_error", "z-profile error"),
    ("z_variation_ratio", "z-variation ratio"),
    ("diversity_ratio", "diversity ratio"),
)
PLANES_2P5D = ("axial", "coronal", "sagittal")


def table_markdown(result: dict[str, Any]) -> str:
    """Table 1 layout: rows real data, then each generated set; columns IS, FID, then the 2.5D FID
    (mean and per plane) and the 3D structure metrics.

    The real row's FID is the real/real reference (two disjoint real halves or sets), and so are
    its structure metrics (``real_real_structure``).
    """
    real = result.get("real", {})

    def is_cell(entry: dict[str, Any]) -> str:
        if entry.get("is_mean") is None:
            return "n/a (no logits model)" if entry.get("is_reason") else "n/a"
        return _pm(entry.get("is_mean"), entry.get("is_std"))

    def structure_cells(entry: dict[str, Any] | None) -> list[str]:
        return [_num((entry or {}).get(key)) for key, _ in STRUCTURE_COLUMNS]

    header = ["Data", "IS", "FID (slice, paper)", "FID 2.5D", *(f"FID {p}" for p in PLANES_2P5D)]
    header += [label for _, label in STRUCTURE_COLUMNS]
    rows = [
        ["Real data", is_cell(real), _pm(result.get("real_real_fid_slice_mean"), result.get("real_real_fid_slice_std"))]
        + ["—"] * 4
        + structure_cells(result.get("real_real_structure")),
    ]
    for name, entry in result.get("fakes", {}).items():
        rows.append(
            [name, is_cell(entry), _pm(entry.get("fid_slice_mean"), entry.get("fid_slice_std")), _num(entry.get("fid_2p5d"))]
            + [_num(entry.get(f"fid_2p5d_{p}")) for p in PLANES_2P5D]
            + structure_cells(entry)
        )
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = [
        "",
        "IS and FID: slice by slice over (real, generated) volume pairs, mean ± std (as the paper's Table 1);",
        "real data FID: between disjoint real volumes. FID 2.5D: whole sets, mean of axial/coronal/sagittal FIDs.",
        "3D structure (generated vs real; the real row: two halves of the real set): z-profile error",
        "0 = real head-to-feet tissue layout, 1 = flat (one slice repeated), > 1 worse; z-variation ratio",
        "(slice-to-slice change) and diversity ratio (seed to seed) 1 = like real, ~0 = constant along z / one volume.",
    ]
    reasons = {
        n: e["diversity_reason"] for n, e in result.get("fakes", {}).items() if e.get("diversity_reason")
    }
    if reasons:
        notes.append("Diversity n/a: " + "; ".join(f"{n}: {r}" for n, r in reasons.items()) + ".")
    closer = {n: (e["closer_than_real_pair"], e.get("n_fake")) for n, e in result.get("fakes", {}).items()
              if e.get("closer_than_real_pair") is not None}
    if closer:
        notes.append("Closer to a real volume than the two closest real volumes are to each other (32^3 cubes; what "
                     "`generate --guard` rejects when the real set is the training set): "
                     + ", ".join(f"{n}: {k} of {m}" for n, (k, m) in closer.items()) + ".")
    floors = {n: (e["z_profile_floor"], e.get("n_fake")) for n, e in result.get("fakes", {}).items()
              if e.get("z_profile_floor")}
    if floors:
        notes.append("z-profile error a perfect generator would score with as many volumes (real volumes drawn with "
                     "replacement; mean, 90 % under): "
                     + ", ".join(f"{n}: {f['mean']:.2f}, {f['upper']:.2f} (n = {m})" for n, (f, m) in floors.items()) + ".")
    boots = {n: e["z_profile_bootstrap"] for n, e in result.get("fakes", {}).items() if e.get("z_profile_bootstrap")}
    if boots:
        notes.append("z-profile error, 90 % bootstrap interval (the generated volumes resampled with replacement): "
                     + ", ".join(f"{n}: {b['low']:.2f}-{b['high']:.2f}" for n, b in boots.items()) + ".")
    flagged = {n: e["memorization"]["n_flagged"] for n, e in result.get("fakes", {}).items() if e.get("memorization")}
    if flagged:
        notes.append("Near-copies of training volumes: " + ", ".join(f"{n}: {k}" for n, k in flagged.items()) + ".")
    return "\n".join(lines + notes) + "\n"


def write_table(path: str | Path, result: dict[str, Any]) -> Path:
    """Write :func:`table_markdown` atomically."""
    return atomic_write_text(path, table_markdown(result))
