"""What ``nodules erase`` did to each nodule: ``erased.csv`` and the HU measure behind it.

For every erased nodule one row: where it was (cube voxels), its diameter, the method (``classical``
or the eraser checkpoint's path), and three mean HU values:

- ``hu_before`` / ``hu_after``: mean HU in the **region**, the nodule sphere (radius = diameter / 2
  in mm, per-axis spacing; at least the centre voxel), before and after erasing;
- ``hu_parenchyma``: mean HU of the lung around it: lung-mask voxels (of the input volume) in a
  shell from the outer edge of what the method may change (``extent_mm``) out to
  ``extent_mm + max(radius, 2 voxels)``, other listed nodules' spheres (1.5 x radius) left out.
  The volume there is the same before and after.

``erased_ok`` = ``|hu_after - hu_parenchyma| <= 100`` HU: the region now reads as the lung around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ctsgan.io.atomic import atomic_write_text

__all__ = ["ERASED_COLUMNS", "ERASED_TOLERANCE_HU", "ErasedNodule", "distance_mm", "erased_stats", "read_erased",
           "write_erased"]

#: |hu_after - hu_parenchyma| within this counts as erased (issue #11)
ERASED_TOLERANCE_HU = 100.0


@dataclass(frozen=True)
class ErasedNodule:
    """One row of ``erased.csv`` (centre (z, y, x) in cube voxels; HU means as in the module doc)."""

    volume_id: str
    z: float
    y: float
    x: float
    diameter_mm: float
    method: str
    extent_mm: float
    region_voxels: int
    hu_before: float
    hu_after: float
    hu_parenchyma: float
    parenchyma_voxels: int

    @property
    def diff_hu(self) -> float:
        """``hu_after - hu_parenchyma``."""
        return self.hu_after - self.hu_parenchyma

    @property
    def erased_ok(self) -> bool:
        """The region's mean HU is within :data:`ERASED_TOLERANCE_HU` of the surrounding lung."""
        return bool(abs(self.diff_hu) <= ERASED_TOLERANCE_HU)


ERASED_COLUMNS = [*ErasedNodule.__dataclass_fields__.keys(), "diff_hu", "erased_ok"]


def distance_mm(shape: Sequence[int], centre_zyx: Sequence[float], spacing_zyx: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) of every voxel of a (z, y, x) grid of ``shape`` to ``centre_zyx`` (voxels)."""
    grids = np.ogrid[tuple(slice(0, int(s)) for s in shape)]
    acc: np.ndarray = np.zeros(tuple(int(s) for s in shape), dtype=np.float32)
    for g, c, sp in zip(grids, centre_zyx, spacing_zyx, strict=True):
        acc = acc + (((g - float(c)) * float(sp)) ** 2).astype(np.float32)
    return np.sqrt(acc)


def erased_stats(
    volume_id: str,
    before: np.ndarray,
    after: np.ndarray,
    lung: np.ndarray,
    centre_zyx: Sequence[float],
    diameter_mm: float,
    spacing_zyx: Sequence[float],
    extent_mm: float,
    method: str,
    others: Sequence[tuple[Sequence[float], float]] = (),
) -> ErasedNodule:
    """Measure one erased nodule (module doc).

    Args:
        volume_id: the volume's id.
        before, after: (z, y, x) HU volumes, input and erased.
        lung: bool (z, y, x) lung mask of ``before``.
        centre_zyx: nodule centre (voxels); diameter_mm: its diameter.
        spacing_zyx: voxel spacing (mm).
        extent_mm: radius (mm) beyond which the method leaves the volume unchanged.
        method: ``classical`` or the eraser checkpoint path.
        others: the volume's other nodules (centre, diameter mm), kept out of the parenchyma shell.
    """
    if before.shape != after.shape or lung.shape != before.shape or before.ndim != 3:
        raise ValueError(f"before, after and lung must share one (z, y, x) shape, got {before.shape}, "
                         f"{after.shape}, {lung.shape}")
    dist = distance_mm(before.shape, centre_zyx, spacing_zyx)
    radius = 0.5 * float(diameter_mm)
    region = dist <= radius
    region[tuple(int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(centre_zyx, before.shape, strict=True))] = True
    width = max(radius, 2.0 * max(float(s) for s in spacing_zyx))
    shell = (dist > extent_mm) & (dist <= extent_mm + width) & np.asarray(lung, dtype=bool)
    for c, d in others:
        shell &= distance_mm(before.shape, c, spacing_zyx) > 0.75 * float(d)
    par = before[shell].astype(np.float64)
    return ErasedNodule(
        volume_id=volume_id,
        z=round(float(centre_zyx[0]), 3),
        y=round(float(centre_zyx[1]), 3),
        x=round(float(centre_zyx[2]), 3),
        diameter_mm=round(float(diameter_mm), 3),
        method=method,
        extent_mm=round(float(extent_mm), 2),
        region_voxels=int(region.sum()),
        hu_before=round(float(before[region].mean()), 1),
        hu_after=round(float(after[region].mean()), 1),
        hu_parenchyma=round(float(par.mean()), 1) if par.size else float("nan"),
        parenchyma_voxels=int(par.size),
    )


def write_erased(path: str | Path, rows: Sequence[ErasedNodule]) -> None:
    """Write ``erased.csv`` atomically (columns :data:`ERASED_COLUMNS`)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ERASED_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**asdict(r), "diff_hu": round(r.diff_hu, 1), "erased_ok": int(r.erased_ok)})
    atomic_write_text(path, buf.getvalue())


def read_erased(path: str | Path) -> list[ErasedNodule]:
    """Read ``erased.csv``; a missing column is a ValueError naming the file."""
    import csv

    path = Path(path)
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            try:
                out.append(ErasedNodule(
                    volume_id=r["volume_id"], z=float(r["z"]), y=float(r["y"]), x=float(r["x"]),
                    diameter_mm=float(r["diameter_mm"]), method=r["method"], extent_mm=float(r["extent_mm"]),
                    region_voxels=int(r["region_voxels"]), hu_before=float(r["hu_before"]),
                    hu_after=float(r["hu_after"]), hu_parenchyma=float(r["hu_parenchyma"]),
                    parenchyma_voxels=int(r["parenchyma_voxels"]),
                ))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: bad row ({type(e).__name__}: {e})") from None
    return out
