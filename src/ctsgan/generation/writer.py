"""Writing one generated volume (preview + volume file or DICOM folder), safe to run in a worker
process: this module imports numpy and the writers only, never torch.

Order and atomicity make a finished volume recognisable by its name alone: the preview is
written first and the volume last, each atomically (the volume file via a temp file and
``os.replace``; a DICOM series into a hidden temp folder renamed onto its name), so a volume
file or series folder that exists is complete, and its preview is there too. ``generate
--resume`` relies on that after a kill.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FORMAT_SUFFIX = {"nifti": ".nii.gz", "npy": ".npy", "dicom": ""}


def output_path(out_dir: Path, name: str, fmt: str) -> Path:
    """Where volume ``name`` is written: ``<name>.nii.gz``, ``<name>.npy`` or the folder ``<name>/``."""
    if fmt not in FORMAT_SUFFIX:
        raise ValueError(f"format must be one of {list(FORMAT_SUFFIX)}, got {fmt!r}")
    return out_dir / f"{name}{FORMAT_SUFFIX[fmt]}"


def _write_dicom_atomically(out_dir: Path, name: str, hu: np.ndarray, spacing: Sequence[float]) -> Path:
    from ctsgan.io.dicom_writer import write_dicom_series

    final = out_dir / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir))
    try:
        write_dicom_series(tmp, hu, spacing, name=name)
        if final.exists():  # --overwrite: move the old series aside first (a folder cannot be replaced in one step)
            old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=out_dir))
            os.replace(final, old / name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_generated(
    out_dir: str | Path, name: str, hu: np.ndarray, spacing: Sequence[float], fmt: str, preview: bool
) -> Path:
    """Write one generated int16 HU volume (z, y, x) and, when asked, ``previews/<name>.png``.

    Returns:
        the volume file (or DICOM folder).
    """
    out_dir = Path(out_dir)
    spacing_t = tuple(float(s) for s in spacing)
    if preview:
        from ctsgan.viz.preview import save_preview

        save_preview(out_dir / "previews" / f"{name}.png", hu, spacing_t)  # type: ignore[arg-type]
    if fmt == "dicom":
        return _write_dicom_atomically(out_dir, name, hu, spacing_t)
    from ctsgan.io.volumes import write_volume

    return write_volume(out_dir, name, hu, spacing_t, fmt=fmt)


def remove_stale_temps(out_dir: Path, names: Sequence[str]) -> int:
    """Delete the temp files / folders a killed writer left for volumes ``names`` (``.<name>.*.tmp*``).

    Only these names' temps: another process (a torchrun rank) may be writing its own.

    Returns:
        how many were removed.
    """
    if not out_dir.is_dir():
        return 0
    wanted = set(names)
    removed = 0
    for folder in (out_dir, out_dir / "previews"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            is_temp = p.name.startswith(".") and (".tmp" in p.name or p.name.endswith(".old"))
            if not is_temp:
                continue
            base = p.name[1:].split(".", 1)[0]
            if base in wanted:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed += 1
    return removed


def remove_output(out_dir: Path, name: str, fmt: str) -> None:
    """Delete volume ``name`` (file or DICOM folder) and its preview, where they exist."""
    path = output_path(out_dir, name, fmt)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    (out_dir / "previews" / f"{name}.png").unlink(missing_ok=True)
