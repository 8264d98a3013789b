"""Reading one CT series: DICOM slices (pydicom header checks + SimpleITK pixels) or a volume file.

DICOM: every file's header is read once with pydicom (``stop_before_pixels``) into a
:class:`SliceHeader`; a series (all slices sharing a SeriesInstanceUID) is checked by
:func:`check_dicom_series` (CT modality, one slice geometry, slices sorted by position along the
slice normal, no duplicated or missing slices, one slice spacing; gantry tilt measured) and read by
:func:`read_dicom_series` with SimpleITK's ``ImageSeriesReader`` (float32, so
RescaleSlope/RescaleIntercept are applied exactly, slice by slice).

NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mhd``, ``.mha``) and NRRD files are read with
``SimpleITK.ReadImage`` by :func:`read_volume_file`.

Every image is then turned into the project's orientation by :func:`to_zyx_hu`: reoriented with
``SimpleITK.DICOMOrient`` to "LPI" (x towards the patient's left, y towards posterior, z from head
to feet), returned as a float32 (z, y, x) array in HU plus the reoriented ``SimpleITK.Image``
(whose index <-> world transform maps annotations).

All problems raise :class:`SeriesError`, whose message is the reason written to ``skipped.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: relative tolerance on slice spacing (a spacing within 5 % of the median is consistent)
SPACING_RTOL = 0.05
#: a gap larger than this many median spacings is reported as missing slices
GAP_FACTOR = 1.5
#: minimum number of slices (and voxels along every axis) for a volume
MIN_SLICES = 3

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr")


class SeriesError(ValueError):
    """A series or file cannot be prepared; the message is the reason (one line)."""


@dataclass(frozen=True)
class SliceHeader:
    """The header fields of one DICOM file that preparation needs (picklable)."""

    path: str
    series_uid: str
    patient_id: str
    modality: str
    sop_uid: str
    position: tuple[float, float, float] | None  # ImagePositionPatient (mm)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6 direction cosines)
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) mm
    rows: int
    columns: int
    frames: int
    slope: float
    intercept: float
    image_type: str
    problem: str | None = None  # set when the pixel data is known to be unreadable (truncated)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def read_slice_header(path: str | Path) -> SliceHeader | None:
    """Read the header of one file.

    Returns ``None`` for a file that is not DICOM at all (no DICM preamble, unparsable), a
    DICOMDIR, or a DICOM object without an image (structured report, presentation state).

    Raises:
        SeriesError: a DICOM file that is truncated or has no SeriesInstanceUID.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = str(path)
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            pixel_offset = fh.tell()
    except InvalidDicomError:
        return None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise SeriesError(f"unreadable DICOM header ({type(e).__name__}: {str(e)[:80]})") from None
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    rows = int(ds.get("Rows", 0) or 0)
    cols = int(ds.get("Columns", 0) or 0)
    has_pixels = pixel_offset < size  # pydicom stopped at a pixel data element before the end
    if not series_uid:
        if str(getattr(ds, "SOPClassUID", "")) == "1.2.840.10008.1.3.10":  # DICOMDIR
            return None
        if not has_pixels:
            raise SeriesError(f"truncated DICOM file: it ends after {size} bytes, inside the header")
        raise SeriesError("DICOM file without SeriesInstanceUID")
    if not has_pixels and not rows:
        return None  # a non-image object (structured report, presentation state, ...)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    problem = None if has_pixels else "truncated DICOM file: no pixel data"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = bool(ts is not None and getattr(ts, "is_compressed", False))
    if has_pixels and rows and cols and not compressed:
        bits = int(ds.get("BitsAllocated", 16) or 16)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        need = rows * cols * frames * spp * bits // 8
        implicit = ts is not None and str(ts) == "1.2.840.10008.1.2"
        have = size - pixel_offset - (8 if implicit else 12)  # the pixel data element's header
        if have < need:
            problem = f"truncated DICOM file: pixel data has {max(have, 0)} of {need} bytes"
    pos = _floats(ds.get("ImagePositionPatient"), 3)
    ori = _floats(ds.get("ImageOrientationPatient"), 6)
    ps = _floats(ds.get("PixelSpacing"), 2)
    return SliceHeader(
        path=path,
        series_uid=series_uid,
        patient_id=str(ds.get("PatientID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        position=pos,  # type: ignore[arg-type]
        orientation=ori,
        pixel_spacing=ps,  # type: ignore[arg-type]
        rows=rows,
        columns=cols,
        frames=frames,
        slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
        intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        image_type="\\".join(str(v) for v in (ds.get("ImageType") or [])),
        problem=problem,
    )


def split_localizers(headers: Sequence[SliceHeader]) -> tuple[list[SliceHeader], list[tuple[SliceHeader, str]]]:
    """Separate localizer (scout) images from the volume's slices of one SeriesInstanceUID.

    Some scanners give the scout the axial series' SeriesInstanceUID. Left out: images whose
    ImageType says LOCALIZER, and images whose orientation or size differs from the largest group
    of slices sharing one (orientation, rows, columns). Nothing is left out when every image is a
    localizer or no single group is the largest (then :func:`check_dicom_series` reports the series).

    Returns:
        (kept headers, [(left-out header, reason), ...]).
    """
    scouts = [h for h in headers if "LOCALIZER" in h.image_type.upper()]
    rest = [h for h in headers if "LOCALIZER" not in h.image_type.upper()]
    if not rest:
        return list(headers), []
    dropped = [(h, "localizer (scout) image (ImageType LOCALIZER), left out of its series") for h in scouts]

    def geometry(h: SliceHeader) -> tuple[Any, ...]:
        ori = None if h.orientation is None else tuple(round(v, 3) + 0.0 for v in h.orientation)
        return (ori, h.rows, h.columns)

    groups: dict[tuple[Any, ...], list[SliceHeader]] = {}
    for h in rest:
        groups.setdefault(geometry(h), []).append(h)
    sizes = sorted((len(g) for g in groups.values()), reverse=True)
    if len(sizes) > 1 and sizes[0] > sizes[1]:
        major = max(groups, key=lambda k: len(groups[k]))
        ori, rows, cols = major
        for key, group in groups.items():
            if key != major:
                for h in group:
                    why = f"{h.rows}x{h.columns}" if (h.rows, h.columns) != (rows, cols) else f"orientation {list(h.orientation or [])}"
                    dropped.append((h, f"localizer-like image ({why}, unlike the series' {len(groups[major])} "
                                       f"{rows}x{cols} slices), left out of its series"))
        rest = groups[major]
    return rest, dropped


@dataclass(frozen=True)
class SortedSeries:
    """A checked DICOM series: slices sorted by position along the slice normal.

    ``positions`` are the slice positions (mm) along the normal, ascending, one per file;
    ``spacing`` the median distance between neighbouring slices (mm); ``tilt_deg`` the gantry
    tilt (0 when the slices are stacked along their normal).
    """

    headers: tuple[SliceHeader, ...]
    positions: tuple[float, ...]
    spacing: float
    tilt_deg: float = 0.0  # angle between the slice stacking direction and the slice normal (gantry tilt)

    @property
    def files(self) -> list[str]:
        return [h.path for h in self.headers]


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of a slice from its ImageOrientationPatient (row and column cosines)."""
    r = np.asarray(orientation[:3], dtype=np.float64)
    c = np.asarray(orientation[3:6], dtype=np.float64)
    n = np.cross(r, c)
    norm = float(np.linalg.norm(n))
    if norm < 1e-6:
        raise SeriesError(f"degenerate ImageOrientationPatient {list(orientation)}")
    return n / norm


def check_dicom_series(headers: Sequence[SliceHeader]) -> SortedSeries:
    """Check one series' headers and sort its slices.

    Args:
        headers: the headers of every file of one SeriesInstanceUID (any order).

    Raises:
        SeriesError: not CT, a truncated slice, a 2D image, mixed slice geometry, missing or
            duplicated slices, or inconsistent slice spacing.
    """
    if not headers:
        raise SeriesError("no DICOM slices")
    modalities = sorted({h.modality or "<none>" for h in headers})
    if modalities != ["CT"]:
        raise SeriesError(f"not a CT series: Modality is {'/'.join(modalities)}")
    bad = [h for h in headers if h.problem]
    if bad:
        raise SeriesError(f"{bad[0].problem} ({Path(bad[0].path).name}); the series needs every slice")
    if any(h.frames > 1 for h in headers):
        raise SeriesError("multi-frame DICOM (enhanced CT) is not supported; convert it to NIfTI first")
    if len(headers) < MIN_SLICES:
        what = "a single slice" if len(headers) == 1 else f"only {len(headers)} slices"
        raise SeriesError(f"2D image: {what}, not a volume")
    if any("LOCALIZER" in h.image_type.upper() for h in headers):
        raise SeriesError("2D image: a localizer (scout) series, not a volume")
    for field in ("position", "orientation", "pixel_spacing"):
        if any(getattr(h, field) is None for h in headers):
            raise SeriesError(f"slices without {field.replace('_', ' ')} (ImagePositionPatient, "
                              "ImageOrientationPatient and PixelSpacing are required)")
    first = headers[0]
    for h in headers[1:]:
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise SeriesError(f"inconsistent slice size: {first.rows}x{first.columns} and {h.rows}x{h.columns}")
        if not np.allclose(h.orientation, first.orientation, atol=1e-3):  # type: ignore[arg-type]
            raise SeriesError("inconsistent ImageOrientationPatient between slices")
        if not np.allclose(h.pixel_spacing, first.pixel_spacing, rtol=1e-3):  # type: ignore[arg-type]
            raise SeriesError(f"inconsistent PixelSpacing: {first.pixel_spacing} and {h.pixel_spacing}")
    normal = slice_normal(first.orientation)  # type: ignore[arg-type]
    proj = np.array([float(np.dot(normal, h.position)) for h in headers])  # type: ignore[arg-type]
    order = np.argsort(proj, kind="stable")
    proj = proj[order]
    ordered = tuple(headers[i] for i in order)
    diffs = np.diff(proj)
    dup = np.flatnonzero(diffs < 1e-3)
    if dup.size:
        a, b = ordered[dup[0]], ordered[dup[0] + 1]
        raise SeriesError(
            f"duplicated slice at position {proj[dup[0]]:.2f} mm ({Path(a.path).name} and {Path(b.path).name})"
        )
    spacing = float(np.median(diffs))
    gap = np.flatnonzero(diffs > GAP_FACTOR * spacing)
    if gap.size:
        i = int(gap[0])
        n_missing = round(diffs[i] / spacing) - 1
        raise SeriesError(
            f"missing slice(s): gap of {diffs[i]:.2f} mm between positions {proj[i]:.2f} and {proj[i + 1]:.2f} mm "
            f"where slices are {spacing:.2f} mm apart (about {max(n_missing, 1)} missing)"
        )
    off = np.abs(diffs - spacing) > SPACING_RTOL * spacing + 1e-3
    if off.any():
        raise SeriesError(
            f"inconsistent slice spacing: {diffs.min():.3f} to {diffs.max():.3f} mm (median {spacing:.3f} mm)"
        )
    tilt = gantry_tilt_deg(ordered, normal)
    return SortedSeries(headers=ordered, positions=tuple(float(p) for p in proj), spacing=spacing, tilt_deg=tilt)


#: a gantry tilt above this (degrees) is resampled onto an axial grid
MIN_TILT_DEG = 0.5
#: a "tilt" above this (degrees) is not a gantry tilt: the series is refused
MAX_TILT_DEG = 45.0


def gantry_tilt_deg(ordered: Sequence[SliceHeader], normal: np.ndarray) -> float:
    """Angle (degrees) between the first-to-last slice step and the slice normal.

    Gantry tilt: the slices are stacked along the table while their planes are tilted, so the
    voxel grid is sheared (15 degrees over 64 slices of 5 mm is about 85 mm of shear).

    Raises:
        SeriesError: the angle exceeds :data:`MAX_TILT_DEG` (no scanner tilts that far).
    """
    step = np.asarray(ordered[-1].position, dtype=np.float64) - np.asarray(ordered[0].position, dtype=np.float64)
    along = float(np.dot(step, normal))
    across = float(np.linalg.norm(step - along * normal))
    angle = float(np.degrees(np.arctan2(across, abs(along))))
    if angle > MAX_TILT_DEG:
        raise SeriesError(
            f"slices are stacked {angle:.1f} degrees away from their normal ({across:.1f} mm shear over "
            f"{len(ordered)} slices): not a gantry tilt up to {MAX_TILT_DEG:g} degrees"
        )
    return angle


def resample_tilted(image: Any, series: SortedSeries) -> Any:
    """Resample a gantry-tilted series onto an axis-aligned (LPS) grid in true world positions.

    SimpleITK places slice k at ``origin + k * spacing_z * normal``; the scanner put it at
    ``position_0 + k * step`` with ``step`` along the table. The true index -> world map is
    ``p0 + [sx r, sy c, step] @ index``; an affine transform maps every output point back to where
    SimpleITK's (unsheared) image holds it, and ``SimpleITK.Resample`` interpolates (linear;
    outside the scan: -1024 HU air). Output spacing: (sx, sy, |step|), identity direction.

    Args:
        image: float32 ``SimpleITK.Image`` as read from ``series`` (slices in ``series`` order).
        series: the checked series (its headers give the true positions).

    Returns:
        the resampled float32 ``SimpleITK.Image``.
    """
    import SimpleITK as sitk

    h0, hn = series.headers[0], series.headers[-1]
    p0 = np.asarray(h0.position, dtype=np.float64)
    step = (np.asarray(hn.position, dtype=np.float64) - p0) / (len(series.headers) - 1)
    r = np.asarray(h0.orientation[:3], dtype=np.float64)  # type: ignore[index]
    c = np.asarray(h0.orientation[3:6], dtype=np.float64)  # type: ignore[index]
    n = slice_normal(h0.orientation)  # type: ignore[arg-type]
    sx, sy = (float(v) for v in image.GetSpacing()[:2])
    along = float(np.dot(step, n))
    flat = sitk.Image(image)  # the grid SimpleITK assumes: slices stacked along the normal
    flat.SetOrigin(tuple(p0))
    flat.SetDirection(tuple(np.column_stack([r, c, n]).ravel()))
    flat.SetSpacing((sx, sy, along))
    m_true = np.column_stack([sx * r, sy * c, step])
    m_flat = np.column_stack([sx * r, sy * c, along * n])
    to_flat = sitk.AffineTransform(3)
    to_flat.SetMatrix(tuple((m_flat @ np.linalg.inv(m_true)).ravel()))
    to_flat.SetCenter(tuple(p0))
    size = image.GetSize()
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)], float)
    world = p0 + corners @ m_true.T
    lo, hi = world.min(axis=0), world.max(axis=0)
    spacing = np.array([sx, sy, float(np.linalg.norm(step))])
    out_size = [int(v) for v in np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1]
    return sitk.Resample(flat, out_size, to_flat, sitk.sitkLinear, tuple(lo), tuple(spacing),
                         (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), -1024.0, sitk.sitkFloat32)


def read_dicom_series(series: SortedSeries) -> Any:
    """Read a checked series with SimpleITK -> float32 ``SimpleITK.Image`` in HU (DICOM geometry).

    ``ImageSeriesReader`` reads the files in the given (sorted) order and applies each slice's
    RescaleSlope / RescaleIntercept; asking for float32 keeps non-integer rescales exact. A
    gantry-tilted series (``series.tilt_deg`` > :data:`MIN_TILT_DEG`) is resampled onto an axial
    grid (:func:`resample_tilted`), so the volume is not sheared.
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series.files)
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise SeriesError(f"SimpleITK could not read the series: {_first_line(e)}") from None
    if series.tilt_deg > MIN_TILT_DEG:
        return resample_tilted(image, series)
    z_sp = image.GetSpacing()[2]
    if abs(z_sp - series.spacing) > SPACING_RTOL * series.spacing + 1e-3:
        raise SeriesError(f"slice spacing {z_sp:.3f} mm from SimpleITK differs from positions ({series.spacing:.3f} mm)")
    return image


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(e).__name__
    return msg[:160]


def is_volume_file(path: str | Path) -> bool:
    """True for file names SimpleITK reads as one volume (NIfTI, MetaImage, NRRD)."""
    return Path(path).name.lower().endswith(VOLUME_SUFFIXES)


def volume_stem(path: str | Path) -> str:
    """File name without its volume suffix (``a.nii.gz`` -> ``a``)."""
    name = Path(path).name
    for sfx in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(sfx):
            return name[: -len(sfx)]
    return Path(path).stem


def read_volume_file(path: str | Path) -> Any:
    """Read a NIfTI / MetaImage / NRRD file -> float32 ``SimpleITK.Image`` (3D, scalar, finite).

    Raises:
        SeriesError: unreadable, not 3D (a 2D image, a 4D series), multi-component, a single
            slice, containing NaN / infinite values, or blank (one value everywhere).
    """
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise SeriesError(f"SimpleITK could not read the file: {_first_line(e)}") from None
    dim = image.GetDimension()
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise SeriesError(f"multi-component image ({image.GetNumberOfComponentsPerPixel()} values per voxel), expected CT HU")
    if dim == 2:
        raise SeriesError(f"2D image ({size[0]}x{size[1]}), not a volume")
    if dim != 3:
        raise SeriesError(f"{dim}D image of size {size}, expected a 3D volume")
    if min(size) < MIN_SLICES:
        raise SeriesError(f"2D image: size {size[0]}x{size[1]}x{size[2]} has fewer than {MIN_SLICES} voxels along an axis")
    image = sitk.Cast(image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(image)
    n_total = int(arr.size)
    # SimpleITK's NIfTI reader silently turns NaN into 0, so NIfTI float data is checked raw
    raw_bad = nifti_nonfinite_count(path)
    n_bad = raw_bad if raw_bad is not None else int(n_total - np.count_nonzero(np.isfinite(arr)))
    if n_bad == n_total:
        raise SeriesError("every voxel is NaN or infinite")
    if n_bad:
        raise SeriesError(f"{n_bad} of {n_total} voxels are NaN or infinite")
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise SeriesError(f"every voxel is {lo:g}: a blank image")
    return image


_NIFTI_FLOATS: dict[int, np.dtype[Any]] = {16: np.dtype(np.float32), 64: np.dtype(np.float64)}


def nifti_nonfinite_count(path: str | Path) -> int | None:
    """Number of NaN / infinite values in a float NIfTI-1/2 file's raw data, or None if not applicable.

    Reads the header (datatype, dims, vox_offset) and streams the data block with numpy.
    """
    import gzip

    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        head = fh.read(540)
        if len(head) < 348:
            return None
        for order in ("<", ">"):
            size = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
            if size in (348, 540):
                break
        else:
            return None
        if size == 348:
            dims = np.frombuffer(head[40:56], dtype=f"{order}i2").astype(np.int64)
            dtype_code = int(np.frombuffer(head[70:72], dtype=f"{order}i2")[0])
            offset = int(np.frombuffer(head[108:112], dtype=f"{order}f4")[0])
        else:
            dtype_code = int(np.frombuffer(head[12:14], dtype=f"{order}i2")[0])
            dims = np.frombuffer(head[16:80], dtype=f"{order}i8")
            offset = int(np.frombuffer(head[168:176], dtype=f"{order}i8")[0])
        if dtype_code not in _NIFTI_FLOATS or not 1 <= dims[0] <= 7:
            return None
        dt = _NIFTI_FLOATS[dtype_code].newbyteorder(order)
        remaining = int(np.prod(dims[1 : dims[0] + 1]))
        fh.seek(offset)
        bad = 0
        chunk = 1 << 22
        while remaining > 0:
            n = min(chunk, remaining)
            buf = fh.read(n * dt.itemsize)
            vals = np.frombuffer(buf[: len(buf) // dt.itemsize * dt.itemsize], dtype=dt)
            if vals.size == 0:
                break
            bad += int(vals.size - np.count_nonzero(np.isfinite(vals)))
            remaining -= vals.size
        return bad


#: a CT in HU has air (outside the body, in the lungs) well below this
AIR_CHECK_HU = -500.0


def check_hu(hu: np.ndarray) -> None:
    """Refuse a volume without any air: not CT in Hounsfield units.

    Args:
        hu: (z, y, x) values as read.

    Raises:
        SeriesError: no voxel below -500 HU (a label map or mask, or pixel data without its
            rescale intercept).
    """
    lo = float(hu.min())
    if lo >= AIR_CHECK_HU:
        raise SeriesError(
            f"no voxel below {AIR_CHECK_HU:g} HU (minimum {lo:g}): not CT in Hounsfield units "
            "(a label map, or pixel data without its rescale?)"
        )


def to_zyx_hu(image: Any) -> tuple[np.ndarray, Any]:
    """Reorient a 3D image to LPI and return ((z, y, x) float32 HU array, reoriented image).

    After ``DICOMOrient(image, "LPI")`` index x runs to the patient's left, y to posterior and
    z from head to feet, so the array follows the project's (z, y, x), head-first convention.
    The axes are permuted / flipped only (no resampling); an oblique scan keeps its nearest
    axis-aligned orientation.
    """
    import SimpleITK as sitk

    oriented = sitk.DICOMOrient(image, "LPI")
    return sitk.GetArrayFromImage(oriented).astype(np.float32, copy=False), oriented
