"""Finding every CT series under the inputs of ``ctsgan prepare``.

Walks each input (a folder, recursively in sorted order, following symlinked folders, or a
single file) and sorts what it finds:

- **volume files** (``.nii``, ``.nii.gz``, ``.mhd``, ``.mha``, ``.nrrd``): one series each;
- **DICOM files** (any other file whose header pydicom can read): grouped by
  SeriesInstanceUID over all inputs (a series may span folders); the header scan runs in
  ``workers`` processes, one folder per task;
- **XML files** beside a DICOM series: candidate LIDC reader XMLs for that series;
- **``annotations.csv``** at the top of an input folder: a LUNA16 nodule table.

Ignored without a word: hidden files, files with document / data suffixes
(:data:`IGNORED_SUFFIXES`), text files without a suffix (``README``, ``ATTRIBUTION``),
DICOMDIR index files, and anything matching an exclude pattern. The default excludes
(:data:`DEFAULT_EXCLUDES`) skip the phantom generator's ``ground_truth`` folders, LUNA16's
``seg-lungs-LUNA16`` lung masks and label volumes named ``*_mask.nii*``, ``*_seg.nii*``,
``*_label.nii*``, ``*_labels.nii*``. A pattern matches a file or folder name, or its full
path (``fnmatch``).

Reported as skipped (path, reason): a missing input, an empty folder, an input with nothing
in it, a file that is not DICOM (binary, or named ``.dcm``), a DICOM file with an unreadable
header, a copy of a DICOM slice already found (same SeriesInstanceUID and SOPInstanceUID), a
localizer (scout) image sharing a volume's SeriesInstanceUID
(:func:`ctsgan.data.series.split_localizers`; the volume is prepared without it), a symlinked
folder that leads to a folder already searched (a loop).

Counted once: a file reached more than once (an input given twice, a file inside a folder
also given, a symlink to a file already found) is taken once, by resolved path; an
annotation CSV given with ``--annotations`` and also found at an input's top is read once.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from ctsgan.data.annotations import AnnotationError, WorldNodule, merge_luna, read_luna_csv
from ctsgan.data.series import (
    SeriesError,
    SliceHeader,
    is_volume_file,
    read_slice_header,
    split_localizers,
    volume_stem,
)

DEFAULT_EXCLUDES = (
    "ground_truth", "seg-lungs-LUNA16", "*_mask.nii*", "*_seg.nii*", "*_label.nii*", "*_labels.nii*"
)
IGNORED_SUFFIXES = frozenset(
    ".xml .csv .tsv .txt .md .rst .json .yaml .yml .html .htm .pdf .doc .docx .xls .xlsx .png .jpg .jpeg .gif "
    ".bmp .tif .tiff .zip .tar .gz .tgz .bz2 .xz .7z .raw .zraw .img .py .sh .log .npy .npz .h5 .hdf5 .pt .pth "
    ".sqlite .db .ini .cfg .toml .hdr".split()
)
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ".dic"})
LUNA_CSV_NAME = "annotations.csv"


@dataclass(frozen=True)
class SeriesJob:
    """One series to prepare (picklable; sent to a worker process).

    ``kind`` is ``"dicom"`` (``headers`` hold every slice, unsorted) or ``"file"`` (``files``
    holds the one volume file). ``xmls`` are candidate LIDC reader XMLs beside the series,
    ``luna`` the nodules of annotation CSVs whose seriesuid matches ``key``.
    """

    id: str
    kind: str
    key: str
    input_path: str
    patient_id: str
    source: str
    files: tuple[str, ...]
    headers: tuple[SliceHeader, ...] = ()
    xmls: tuple[str, ...] = ()
    luna: tuple[WorldNodule, ...] = ()


@dataclass
class Discovery:
    """What :func:`discover` found: jobs (sorted by id), skipped (path, reason), CSVs read."""

    jobs: list[SeriesJob] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    annotation_csvs: list[str] = field(default_factory=list)


def _excluded(path: Path, patterns: Sequence[str]) -> bool:
    name, full = path.name, path.as_posix()
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(full, p) for p in patterns)


def _looks_like_text(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048)
    except OSError:
        return False
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _suffix(path: Path) -> str:
    sfx = path.suffix.lower()
    return "" if sfx[1:].isdigit() else sfx  # "1.2.840.113.5" is a UID, not a suffix


def _scan_dicom_files(paths: Sequence[str]) -> list[tuple[str, SliceHeader | None, str | None]]:
    """Header of every file: (path, header or None, skip reason or None)."""
    out: list[tuple[str, SliceHeader | None, str | None]] = []
    for p in paths:
        try:
            h = read_slice_header(p)
        except SeriesError as e:
            out.append((p, None, str(e)))
            continue
        except OSError as e:
            out.append((p, None, f"unreadable file ({e.strerror or e})"))
            continue
        if h is None:
            path = Path(p)
            if _suffix(path) in DICOM_SUFFIXES or not _looks_like_text(path):
                out.append((p, None, "not a DICOM file (no DICOM header)"))
            else:
                out.append((p, None, None))  # a text file: README, ATTRIBUTION, ...
        else:
            out.append((p, h, None))
    return out


def _safe_id(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return s or "volume"


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def source_name(patient_id: str, fallback: str) -> str:
    """Data source from a patient id: the id without its trailing number, lower-case.

    ``LIDC-IDRI-0001`` -> ``lidc-idri``, ``Lung_Dx-A0001`` -> ``lung_dx``, ``phantom-0-0003`` ->
    ``phantom``; ids that are numbers only (NLST) or UIDs give ``fallback`` (the input folder's name).
    """
    prefix = re.sub(r"([-_. ]*[A-Za-z]?\d+)+$", "", patient_id.strip())
    prefix = prefix.strip("-_. ")
    if not re.search(r"[A-Za-z]{2,}", prefix):
        prefix = fallback
    return prefix.lower() or "unknown"


def _walk(root: Path, excludes: Sequence[str], found: dict[str, list[Path]], skipped: list[tuple[str, str]]) -> None:
    """Walk ``root`` in sorted order, following symlinked folders; a folder reached a second
    time (a symlink loop, or a link to a folder already searched) is listed in ``skipped``."""
    searched: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        real = os.path.realpath(d)
        if real in searched:
            skipped.append((str(d), f"symlink to a folder already searched ({searched[real]}); not searched again"))
            dirnames[:] = []
            continue
        searched[real] = d
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and not _excluded(d / n, excludes))
        if not dirnames and not filenames:
            skipped.append((str(d), "empty folder"))
            continue
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            _classify(d / name, excludes, found, top=(d == root))


def _classify(path: Path, excludes: Sequence[str], found: dict[str, list[Path]], top: bool) -> None:
    if _excluded(path, excludes):
        return
    if is_volume_file(path):
        found["volume"].append(path)
    elif path.name.lower() == LUNA_CSV_NAME and top:
        found["csv"].append(path)
    elif _suffix(path) == ".xml":
        found["xml"].append(path)
    elif _suffix(path) not in IGNORED_SUFFIXES and path.name.upper() != "DICOMDIR":
        found["dicom"].append(path)


def discover(
    inputs: Iterable[str | Path],
    excludes: Sequence[str] = (),
    annotations: str | Path | None = None,
    executor: Executor | None = None,
) -> Discovery:
    """Find every series under ``inputs`` (module doc).

    Args:
        inputs: folders or files.
        excludes: extra glob patterns, added to :data:`DEFAULT_EXCLUDES`.
        annotations: a LUNA16 annotations.csv to use besides those found at the inputs' tops.
        executor: runs the DICOM header scan in parallel (one folder per task) when given.

    Returns:
        the jobs (sorted by id) and what was skipped.

    Raises:
        AnnotationError: the ``annotations`` CSV given explicitly cannot be read.
    """
    pats = tuple(DEFAULT_EXCLUDES) + tuple(excludes)
    disc = Discovery()
    luna_tables = []
    csvs_read: set[Path] = set()  # resolved paths: one annotation file counts once
    if annotations is not None:
        luna_tables.append(read_luna_csv(annotations))
        disc.annotation_csvs.append(str(annotations))
        csvs_read.add(Path(annotations).resolve())
    per_input: list[tuple[Path, dict[str, list[Path]]]] = []
    seen_files: set[Path] = set()  # resolved paths: a file reached twice (input repeated, nested) counts once
    for raw in inputs:
        root = Path(raw)
        found: dict[str, list[Path]] = {"volume": [], "dicom": [], "xml": [], "csv": []}
        n_skipped = len(disc.skipped)
        if not root.exists():
            disc.skipped.append((str(root), "input does not exist"))
            continue
        if root.is_dir():
            _walk(root, pats, found, disc.skipped)
        else:
            _classify(root, (), found, top=False)
        n_found = sum(len(v) for v in found.values())
        for kind in found:
            unique = []
            for p in found[kind]:
                rp = p.resolve()
                if rp not in seen_files:
                    seen_files.add(rp)
                    unique.append(p)
            found[kind] = unique
        if n_found and not any(found.values()):
            continue  # everything under this input was already found under an earlier one
        for csv_path in found["csv"]:
            if csv_path.resolve() in csvs_read:
                continue
            csvs_read.add(csv_path.resolve())
            try:
                luna_tables.append(read_luna_csv(csv_path))
                disc.annotation_csvs.append(str(csv_path))
            except AnnotationError as e:
                disc.skipped.append((str(csv_path), str(e).split(": ", 1)[-1]))
        if not found["volume"] and not found["dicom"] and len(disc.skipped) == n_skipped:
            disc.skipped.append((str(root), "no CT series or volume files found"))
        per_input.append((root, found))
    luna = merge_luna(luna_tables)

    # DICOM headers, one folder per task
    by_dir: dict[Path, list[str]] = {}
    for _root, found in per_input:
        for p in found["dicom"]:
            by_dir.setdefault(p.parent, []).append(str(p))
    dirs = list(by_dir)  # input order: of two copies of a slice, the one under the earlier input is kept
    scans = (
        list(executor.map(_scan_dicom_files, [by_dir[d] for d in dirs]))
        if executor is not None and len(dirs) > 1
        else [_scan_dicom_files(by_dir[d]) for d in dirs]
    )
    series: dict[str, list[SliceHeader]] = {}
    sop_seen: dict[tuple[str, str], str] = {}
    for scan in scans:
        for path, header, reason in scan:
            if reason is not None:
                disc.skipped.append((path, reason))
            elif header is not None:
                key = (header.series_uid, header.sop_uid)
                if header.sop_uid and key in sop_seen:  # a copy of a slice already found (same series and SOP UID)
                    disc.skipped.append((path, f"duplicate of {sop_seen[key]} (same SeriesInstanceUID and SOPInstanceUID)"))
                    continue
                sop_seen[key] = path
                series.setdefault(header.series_uid, []).append(header)

    xmls_by_dir: dict[Path, list[str]] = {}
    root_of: dict[Path, Path] = {}
    for root, found in per_input:
        for p in found["xml"]:
            xmls_by_dir.setdefault(p.parent, []).append(str(p))
        for p in found["dicom"] + found["volume"]:
            root_of.setdefault(p, root)

    jobs: list[SeriesJob] = []
    for uid, all_headers in series.items():
        headers, scouts = split_localizers(all_headers)
        disc.skipped.extend((h.path, reason) for h, reason in scouts)
        headers.sort(key=lambda h: h.path)
        folders = sorted({Path(h.path).parent for h in headers})
        input_path = Path(os.path.commonpath([str(f) for f in folders]))
        root = root_of.get(Path(headers[0].path), input_path)
        pid = headers[0].patient_id or input_path.name
        jobs.append(
            SeriesJob(
                id=f"{_safe_id(pid)}_{_short_hash(uid)}",
                kind="dicom",
                key=uid,
                input_path=str(input_path),
                patient_id=pid,
                source=source_name(pid, root.name if root.is_dir() else root.parent.name),
                files=tuple(h.path for h in headers),
                headers=tuple(headers),
                xmls=tuple(x for f in folders for x in sorted(xmls_by_dir.get(f, []))),
                luna=tuple(luna.get(uid, [])),
            )
        )
    used_ids = {j.id for j in jobs}
    for root, found in per_input:
        for p in found["volume"]:
            stem = volume_stem(p)
            vid = _safe_id(stem)
            if vid in used_ids:
                vid = f"{vid}_{_short_hash(str(p.resolve()), 6)}"
            used_ids.add(vid)
            jobs.append(
                SeriesJob(
                    id=vid,
                    kind="file",
                    key=stem,
                    input_path=str(p),
                    patient_id=stem,
                    source=source_name(stem, root.name if root.is_dir() else root.parent.name),
                    files=(str(p),),
                    luna=tuple(luna.get(stem, [])),
                )
            )
    disc.jobs = sorted(jobs, key=lambda j: j.id)
    return disc
