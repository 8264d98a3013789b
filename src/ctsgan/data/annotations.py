"""Nodule annotations: LIDC-IDRI reader XML and LUNA16 ``annotations.csv``, in world mm.

LIDC reader XML (``LidcReadMessage``, namespace-aware via ElementTree's ``{*}`` wildcard):
every ``readingSession`` is one radiologist; each ``unblindedReadNodule`` is that reader's
nodule, drawn as ``roi`` contours (``edgeMap`` pixel points on the slice given by
``imageSOP_UID`` / ``imageZposition``; ``inclusion`` FALSE marks a hole). Nodules < 3 mm are
marked by a single point and are dropped; so are contours of diameter < 3 mm.

Per reader nodule:
- *diameter* (mm): the largest in-plane distance between two contour points over all its
  contours (the LIDC / pylidc definition), from the whole scan;
- *centre* (world mm): the mean of the pixels inside its contours (holes removed) on the
  slices that the series actually holds (the shared LIDC series are partial slabs: contours on
  other slices do not apply; a nodule with none there is dropped).

Reader nodules are pooled into one nodule when their centres are closer than half the larger
diameter (single linkage); the pooled centre and diameter are the readers' means.

LUNA16 ``annotations.csv``: ``seriesuid, coordX, coordY, coordZ, diameter_mm`` (world mm in
the ITK / DICOM LPS frame); ``seriesuid`` matches a DICOM SeriesInstanceUID or a NIfTI / MHD
file name without suffix.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctsgan.data.series import SortedSeries

MIN_DIAMETER_MM = 3.0


@dataclass(frozen=True)
class WorldNodule:
    """A nodule in world coordinates: centre (x, y, z) mm in the LPS frame, diameter mm."""

    centre_xyz: tuple[float, float, float]
    diameter_mm: float
    readers: int = 1


@dataclass(frozen=True)
class SliceGeometry:
    """What maps LIDC pixel coordinates to world mm: the series' first slice.

    ``origin`` is its ImagePositionPatient, ``row_dir`` / ``col_dir`` the direction cosines
    along a row (x index) and a column (y index), ``pixel_spacing`` (between rows, between
    columns) mm, ``z_positions`` every slice's ImagePositionPatient z (mm) and ``sop_uids`` their
    SOP instance UIDs.
    """

    origin: tuple[float, float, float]
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    z_positions: tuple[float, ...]
    sop_uids: tuple[str, ...]
    slice_spacing: float


def slice_geometry(series: SortedSeries) -> SliceGeometry:
    """The slice geometry of a checked DICOM series (its first slice's position and axes)."""
    first = series.headers[0]
    if first.position is None or first.orientation is None or first.pixel_spacing is None:
        raise ValueError("series without slice geometry")
    return SliceGeometry(
        origin=first.position,
        row_dir=(first.orientation[0], first.orientation[1], first.orientation[2]),
        col_dir=(first.orientation[3], first.orientation[4], first.orientation[5]),
        pixel_spacing=first.pixel_spacing,
        z_positions=tuple(float(h.position[2]) for h in series.headers if h.position is not None),
        sop_uids=tuple(h.sop_uid for h in series.headers),
        slice_spacing=series.spacing,
    )


class AnnotationError(ValueError):
    """An annotation file cannot be read; the message names it."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def is_lidc_xml(path: str | Path) -> bool:
    """True when ``path`` is a LIDC reader XML (root ``LidcReadMessage``), cheaply."""
    try:
        for _event, elem in ET.iterparse(str(path), events=("start",)):
            return _local(elem.tag) == "LidcReadMessage"
    except (ET.ParseError, OSError):
        return False
    return False


def lidc_series_uid(root: ET.Element) -> str | None:
    el = root.find("{*}ResponseHeader/{*}SeriesInstanceUid")
    return el.text.strip() if el is not None and el.text else None


@dataclass(frozen=True)
class _Roi:
    z: float
    sop_uid: str
    inclusion: bool
    points: np.ndarray  # (N, 2) pixel (x=column, y=row)


def _parse_roi(el: ET.Element) -> _Roi:
    z_el = el.find("{*}imageZposition")
    sop_el = el.find("{*}imageSOP_UID")
    inc_el = el.find("{*}inclusion")
    pts = [
        (float(e.findtext("{*}xCoord", "nan")), float(e.findtext("{*}yCoord", "nan")))
        for e in el.findall("{*}edgeMap")
    ]
    return _Roi(
        z=float(z_el.text) if z_el is not None and z_el.text else float("nan"),
        sop_uid=(sop_el.text or "").strip() if sop_el is not None else "",
        inclusion=(inc_el is None or (inc_el.text or "TRUE").strip().upper() == "TRUE"),
        points=np.asarray(pts, dtype=np.float64).reshape(-1, 2),
    )


def read_lidc_rois(path: str | Path) -> tuple[str | None, list[list[list[_Roi]]]]:
    """Parse a LIDC XML -> (SeriesInstanceUid, readers -> nodules -> rois).

    Raises:
        AnnotationError: not XML, or not a LIDC reader XML.
    """
    try:
        root = ET.parse(str(path)).getroot()
    except (ET.ParseError, OSError) as e:
        raise AnnotationError(f"{path}: not readable XML ({e})") from None
    if _local(root.tag) != "LidcReadMessage":
        raise AnnotationError(f"{path}: not a LIDC reader XML (root element {_local(root.tag)!r})")
    readers = []
    for session in root.findall("{*}readingSession"):
        nodules = []
        for nod in session.findall("{*}unblindedReadNodule"):
            rois = [_parse_roi(r) for r in nod.findall("{*}roi")]
            nodules.append([r for r in rois if r.points.size and np.isfinite(r.z)])
        readers.append(nodules)
    return lidc_series_uid(root), readers


def _pixel_to_world(geom: SliceGeometry, cols: np.ndarray, rows: np.ndarray, z: float) -> np.ndarray:
    """Pixel (column, row) on the slice at world z -> (N, 3) world mm."""
    o = np.asarray(geom.origin)
    r = np.asarray(geom.row_dir) * geom.pixel_spacing[1]
    c = np.asarray(geom.col_dir) * geom.pixel_spacing[0]
    pts = o[None] + cols[:, None] * r[None] + rows[:, None] * c[None]
    pts[:, 2] = z
    return pts


def _roi_diameter_mm(roi: _Roi, geom: SliceGeometry) -> float:
    from scipy.spatial.distance import pdist

    if len(roi.points) < 2:
        return 0.0
    mm = roi.points * np.asarray([geom.pixel_spacing[1], geom.pixel_spacing[0]])[None]
    return float(pdist(mm).max())


def _roi_pixels(roi: _Roi) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels inside and on a contour."""
    from skimage.draw import polygon

    xs, ys = roi.points[:, 0], roi.points[:, 1]
    rr, cc = polygon(ys, xs)
    rows = np.concatenate([rr, np.rint(ys).astype(int)])
    cols = np.concatenate([cc, np.rint(xs).astype(int)])
    return rows, cols


def _in_series(roi: _Roi, geom: SliceGeometry) -> bool:
    if roi.sop_uid and roi.sop_uid in geom.sop_uids:
        return True
    zs = np.asarray(geom.z_positions)
    return bool(zs.size) and float(np.min(np.abs(zs - roi.z))) <= 0.25 * geom.slice_spacing


def _reader_nodule(rois: Sequence[_Roi], geom: SliceGeometry) -> WorldNodule | None:
    if all(len(r.points) <= 1 for r in rois):  # the "< 3 mm" single-point marks
        return None
    diameter = max((_roi_diameter_mm(r, geom) for r in rois if r.inclusion), default=0.0)
    if diameter < MIN_DIAMETER_MM:
        return None
    pts = []
    for z in sorted({r.z for r in rois}):
        on_z = [r for r in rois if r.z == z and _in_series(r, geom)]
        if not on_z:
            continue
        inside: set[tuple[int, int]] = set()
        for r in on_z:
            if r.inclusion:
                inside.update(zip(*(a.tolist() for a in _roi_pixels(r)), strict=True))
        for r in on_z:
            if not r.inclusion:
                inside.difference_update(zip(*(a.tolist() for a in _roi_pixels(r)), strict=True))
        if inside:
            rc = np.asarray(sorted(inside), dtype=np.float64)
            pts.append(_pixel_to_world(geom, rc[:, 1], rc[:, 0], z))
    if not pts:
        return None
    centre = np.concatenate(pts).mean(axis=0)
    return WorldNodule(tuple(float(v) for v in centre), diameter)  # type: ignore[arg-type]


def pool_nodules(per_reader: Sequence[Sequence[WorldNodule]]) -> list[WorldNodule]:
    """Pool readers' nodules: link centres closer than half the larger diameter, average each group."""
    flat = [n for nods in per_reader for n in nods]
    parent = list(range(len(flat)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            dist = float(np.linalg.norm(np.subtract(flat[i].centre_xyz, flat[j].centre_xyz)))
            if dist <= 0.5 * max(flat[i].diameter_mm, flat[j].diameter_mm):
                parent[find(i)] = find(j)
    groups: dict[int, list[WorldNodule]] = {}
    for i, n in enumerate(flat):
        groups.setdefault(find(i), []).append(n)
    out = []
    for members in groups.values():
        c = np.mean([m.centre_xyz for m in members], axis=0)
        out.append(
            WorldNodule(
                tuple(float(v) for v in c),  # type: ignore[arg-type]
                float(np.mean([m.diameter_mm for m in members])),
                readers=len(members),
            )
        )
    return sorted(out, key=lambda n: n.centre_xyz[::-1])


def lidc_reader_nodules(
    xml_path: str | Path, geom: SliceGeometry, series_uid: str | None = None
) -> list[list[WorldNodule]]:
    """Each reader's nodules >= 3 mm (unpooled) of one LIDC XML that lie in the series' slices.

    Args:
        xml_path: the reader XML.
        geom: the series' slice geometry.
        series_uid: when given, an XML for another series gives no nodules.

    Raises:
        AnnotationError: unreadable or not a LIDC XML.
    """
    uid, readers = read_lidc_rois(xml_path)
    if series_uid is not None and uid is not None and uid != series_uid:
        return []
    per_reader = []
    for nodules in readers:
        found = [_reader_nodule(rois, geom) for rois in nodules if rois]
        per_reader.append([n for n in found if n is not None])
    return per_reader


def lidc_nodules(xml_path: str | Path, geom: SliceGeometry, series_uid: str | None = None) -> list[WorldNodule]:
    """Pooled nodules >= 3 mm of one LIDC XML in the series' slices (see :func:`lidc_reader_nodules`)."""
    return pool_nodules(lidc_reader_nodules(xml_path, geom, series_uid))


LUNA_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


def read_luna_csv(path: str | Path) -> dict[str, list[WorldNodule]]:
    """Read a LUNA16 ``annotations.csv`` -> {seriesuid: nodules}.

    Raises:
        AnnotationError: missing columns or a bad number (naming the file and line).
    """
    path = Path(path)
    out: dict[str, list[WorldNodule]] = {}
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LUNA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{path}: not a LUNA16 annotations.csv, missing columns {missing}")
            for line, row in enumerate(reader, start=2):
                try:
                    nod = WorldNodule(
                        (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])), float(row["diameter_mm"])
                    )
                except (TypeError, ValueError):
                    raise AnnotationError(f"{path}:{line}: bad number in {row}") from None
                out.setdefault(row["seriesuid"].strip(), []).append(nod)
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: {e}") from None
    return out


def merge_luna(tables: Iterable[dict[str, list[WorldNodule]]]) -> dict[str, list[WorldNodule]]:
    """Merge several LUNA tables (rows of the same series are concatenated)."""
    out: dict[str, list[WorldNodule]] = {}
    for t in tables:
        for k, v in t.items():
            out.setdefault(k, []).extend(v)
    return out
