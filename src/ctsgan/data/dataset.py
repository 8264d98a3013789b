"""The prepared-dataset contract (see DESIGN.md, "Conventions").

A prepared dataset directory holds::

    DIR/volumes/<id>.npy   int16 HU cube of shape (S, S, S) = (z, y, x), memory-mappable
    DIR/manifest.csv       one row per prepared volume (columns: MANIFEST_COLUMNS)
    DIR/nodules.csv        volume_id, z, y, x, diameter_vox, diameter_mm (cube voxel coordinates)
    DIR/skipped.csv        path, reason   (inputs that could not be prepared)
    DIR/previews/<id>.png  tri-planar preview

Every other part of the project (training, evaluation, nodules, experiments) reads datasets only
through this module, so the CSV layout lives in one place.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ctsgan.io.atomic import atomic_write_text

SPLITS = ("train", "validation", "test")


@dataclass
class ManifestRow:
    """One prepared volume.

    Shapes and spacings are (z, y, x); spacing in mm. ``scale`` is the per-axis factor
    (prepared voxel size / original voxel size) of the geometry step, so a point maps as
    ``cube_index = (orig_index + 0.5 - crop_start) / scale - 0.5`` (voxel centres at integer
    indices; ``orig_index`` in the head-first reoriented original, see
    ``ctsgan.data.geometry.orig_to_cube``).
    """

    id: str
    patient_id: str
    source: str
    input_path: str
    path: str  # relative to the dataset dir, e.g. volumes/<id>.npy
    size: int
    orig_shape: tuple[int, int, int]
    orig_spacing: tuple[float, float, float]
    crop_start: tuple[int, int, int]
    crop_shape: tuple[int, int, int]
    scale: tuple[float, float, float]
    spacing: tuple[float, float, float]
    has_nodule: bool
    n_nodules: int
    split: str
    status: str = "ok"

    @classmethod
    def as_is(
        cls,
        id: str,
        shape: tuple[int, int, int],
        *,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        split: str = "train",
        source: str = "synthetic",
        n_nodules: int = 0,
        patient_id: str | None = None,
    ) -> ManifestRow:
        """The row of a volume stored as it was made (no crop, no resampling), at
        ``volumes/<id>.npy``: generated, benchmark and test volumes. ``size`` is the in-plane edge;
        the patient is the volume itself unless ``patient_id`` says otherwise."""
        return cls(
            id=id, patient_id=patient_id or id, source=source, input_path=f"synthetic://{id}", path=f"volumes/{id}.npy",
            size=int(shape[-1]), orig_shape=shape, orig_spacing=spacing, crop_start=(0, 0, 0), crop_shape=shape,
            scale=(1.0, 1.0, 1.0), spacing=spacing, has_nodule=n_nodules > 0, n_nodules=n_nodules, split=split,
        )


MANIFEST_COLUMNS = [f.name for f in fields(ManifestRow)]
NODULE_COLUMNS = ["volume_id", "z", "y", "x", "diameter_vox", "diameter_mm"]
SKIPPED_COLUMNS = ["path", "reason"]

_TUPLE_INT = {"orig_shape", "crop_start", "crop_shape"}
_TUPLE_FLOAT = {"orig_spacing", "scale", "spacing"}


def _fmt(value: object) -> str:
    if isinstance(value, tuple | list):
        return " ".join(_fmt(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _parse_row(raw: dict[str, str]) -> ManifestRow:
    kw: dict[str, object] = {}
    for name in MANIFEST_COLUMNS:
        if name not in raw:
            raise ValueError(f"manifest.csv has no column {name!r}")
        v = raw[name]
        if name in _TUPLE_INT:
            kw[name] = tuple(int(p) for p in v.split())
        elif name in _TUPLE_FLOAT:
            kw[name] = tuple(float(p) for p in v.split())
        elif name in ("size", "n_nodules"):
            kw[name] = int(v)
        elif name == "has_nodule":
            kw[name] = v.strip().lower() in ("1", "true", "yes")
        else:
            kw[name] = v
    return ManifestRow(**kw)  # type: ignore[arg-type]


def _csv_text(columns: Sequence[str], rows: Iterable[dict[str, object]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r[k]) for k in columns})
    return buf.getvalue()


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> None:
    """Write ``manifest.csv`` atomically."""
    atomic_write_text(path, _csv_text(MANIFEST_COLUMNS, (asdict(r) for r in rows)))


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read ``manifest.csv``; a missing column is a ValueError naming the file."""
    path = Path(path)
    with open(path, newline="") as fh:
        try:
            return [_parse_row(r) for r in csv.DictReader(fh)]
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e


#: one nodule where it sits: (centre (z, y, x) in cube voxels, diameter in mm); the one such tuple type
NoduleSpec = tuple[tuple[float, float, float], float]


@dataclass(frozen=True)
class Nodule:
    """A nodule in a prepared cube: centre (z, y, x) in voxels, diameter in voxels and mm."""

    volume_id: str
    z: float
    y: float
    x: float
    diameter_vox: float
    diameter_mm: float

    @property
    def spec(self) -> NoduleSpec:
        """``((z, y, x), diameter_mm)``: the form injectors, erasers and the experiments pass around."""
        return (self.z, self.y, self.x), self.diameter_mm


def write_nodules(path: str | Path, nodules: Iterable[Nodule]) -> None:
    """Write ``nodules.csv`` atomically."""
    atomic_write_text(path, _csv_text(NODULE_COLUMNS, (asdict(n) for n in nodules)))


def read_nodules(path: str | Path) -> list[Nodule]:
    """Read ``nodules.csv`` (an absent file means no nodules)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [
            Nodule(
                volume_id=r["volume_id"],
                z=float(r["z"]),
                y=float(r["y"]),
                x=float(r["x"]),
                diameter_vox=float(r["diameter_vox"]),
                diameter_mm=float(r["diameter_mm"]),
            )
            for r in csv.DictReader(fh)
        ]


def write_skipped(path: str | Path, skipped: Iterable[tuple[str, str]]) -> None:
    """Write ``skipped.csv`` (path, reason) atomically."""
    atomic_write_text(path, _csv_text(SKIPPED_COLUMNS, ({"path": p, "reason": r} for p, r in skipped)))


def read_skipped(path: str | Path) -> list[tuple[str, str]]:
    """Read ``skipped.csv`` as (path, reason) pairs (absent file: none)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [(r["path"], r["reason"]) for r in csv.DictReader(fh)]


class PreparedDataset:
    """Read access to a prepared dataset directory.

    Args:
        root: the dataset directory (holding ``manifest.csv``).
        split: keep only rows of this split (``train`` / ``validation`` / ``test``), or all.
    """

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.csv"
        if not manifest.exists():
            raise FileNotFoundError(f"{manifest}: no manifest.csv; is {self.root} a prepared dataset?")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rows = [r for r in read_manifest(manifest) if r.status == "ok"]
        self.rows = [r for r in rows if split is None or r.split == split]
        self.split = split
        by_vol: dict[str, list[Nodule]] = {}
        for n in read_nodules(self.root / "nodules.csv"):
            by_vol.setdefault(n.volume_id, []).append(n)
        self._nodules = by_vol

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rows]

    @property
    def size(self) -> int:
        """Cube edge S (all volumes of a dataset share it)."""
        if not self.rows:
            raise ValueError(f"{self.root}: no volumes (split={self.split})")
        return self.rows[0].size

    def load(self, index: int, mmap: bool = True) -> np.ndarray:
        """Volume ``index`` as int16 HU of shape (S, S, S); memory-mapped by default.

        Raises:
            ValueError: the file is missing, truncated or not a ``.npy`` (the message names it).
        """
        row = self.rows[index]
        path = self.root / row.path
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:  # truncated / not .npy: name the file
            raise ValueError(f"{path}: unreadable volume ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None

    def nodules(self, volume_id: str) -> list[Nodule]:
        """Nodules of one volume (empty list when it has none)."""
        return list(self._nodules.get(volume_id, []))
