"""``prepare``: raw CT (DICOM series, NIfTI / MHD) -> a prepared dataset (see ``dataset.py``).

:func:`prepare_dataset` runs, in order:

1. :func:`ctsgan.data.discover.discover`: every series under the inputs (DICOM headers
   scanned in parallel), annotation CSVs, and the bad inputs found on the way.
2. Per series, in ``workers`` processes (:func:`prepare_series`): read (pydicom checks +
   SimpleITK), reorient to (z, y, x) head first, the geometry step
   (:func:`ctsgan.data.geometry.make_cube`), nodules from the LIDC XML beside the series and the
   LUNA16 CSV rows for it, mapped into cube voxels; then ``volumes/<id>.npy``,
   ``previews/<id>.png`` and ``records/<id>.json`` are written (atomically, in that order).
   A series whose record, volume and preview exist from an earlier run with the same inputs,
   size and code version is reused, so a killed run continues where it stopped.
3. Splits over all prepared volumes (:func:`ctsgan.data.splits.assign_splits`), then
   ``manifest.csv``, ``nodules.csv`` and ``skipped.csv``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ctsgan.data.annotations import AnnotationError, WorldNodule, is_lidc_xml, lidc_nodules, slice_geometry
from ctsgan.data.dataset import ManifestRow, Nodule, write_manifest, write_nodules, write_skipped
from ctsgan.data.discover import Discovery, SeriesJob, discover
from ctsgan.data.geometry import MIN_SIZE, CubeGeometry, make_cube, orig_to_cube
from ctsgan.data.series import (
    SeriesError,
    check_dicom_series,
    check_hu,
    read_dicom_series,
    read_volume_file,
    to_zyx_hu,
)
from ctsgan.data.splits import DEFAULT_FRACTIONS, assign_splits
from ctsgan.io.atomic import atomic_save_npy, atomic_write_text
from ctsgan.viz.preview import save_preview

#: bump when the output of a series changes for the same input (invalidates earlier records)
PREPARE_VERSION = 1
DEFAULT_SIZE = 224


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` did.

    ``prepared``: manifest rows (split filled in); ``skipped``: (path, reason); ``reused``:
    series taken from an earlier run; ``nodules``: the rows of ``nodules.csv``.
    """

    prepared: list[ManifestRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused: int = 0
    nodules: list[Nodule] = field(default_factory=list)
    out_dir: Path | None = None


@dataclass(frozen=True)
class SeriesResult:
    """A worker's answer for one job: a row and its nodules, or a skip reason."""

    job_id: str
    row: ManifestRow | None = None
    nodules: tuple[Nodule, ...] = ()
    skipped: tuple[str, str] | None = None


def world_to_cube(image: Any, centre_xyz: Sequence[float], geom: CubeGeometry) -> tuple[float, float, float]:
    """World point (x, y, z) mm -> cube voxel (z, y, x) through the reoriented image's geometry."""
    ix, iy, iz = image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in centre_xyz))
    return orig_to_cube((iz, iy, ix), geom.crop_start, geom.scale)


def cube_nodules(
    job_id: str, image: Any, world: Sequence[WorldNodule], geom: CubeGeometry
) -> list[Nodule]:
    """World nodules -> cube nodules (those whose centre lies inside the cube).

    ``diameter_vox`` is the diameter in cube voxels along y / x (they share one spacing).
    """
    out = []
    for n in world:
        z, y, x = world_to_cube(image, n.centre_xyz, geom)
        if all(-0.5 <= c <= geom.size - 0.5 for c in (z, y, x)):
            out.append(Nodule(job_id, round(z, 3), round(y, 3), round(x, 3),
                              round(n.diameter_mm / geom.spacing[2], 3), round(n.diameter_mm, 3)))
    return out


def prepare_series(job: SeriesJob, out_dir: Path, size: int, fingerprint: str) -> SeriesResult:
    """Prepare one series (module doc, step 2); every failure becomes a skip reason.

    Writes ``volumes/<id>.npy`` (int16 (S, S, S)), ``previews/<id>.png`` and ``records/<id>.json``.
    """
    try:
        world: list[WorldNodule] = []
        if job.kind == "dicom":
            series = check_dicom_series(job.headers)
            image = read_dicom_series(series)
            geom2d = slice_geometry(series)
            for xml in job.xmls:
                if is_lidc_xml(xml):
                    world.extend(lidc_nodules(xml, geom2d, series_uid=job.key))
        else:
            image = read_volume_file(job.files[0])
        world.extend(job.luna)
        hu, oriented = to_zyx_hu(image)
        check_hu(hu)
        spacing = tuple(float(s) for s in reversed(oriented.GetSpacing()))
        cube, geom = make_cube(hu, spacing, size)
        nodules = cube_nodules(job.id, oriented, world, geom)
    except SeriesError as e:
        return SeriesResult(job.id, skipped=(job.input_path, str(e)))
    except AnnotationError as e:
        return SeriesResult(job.id, skipped=(job.input_path, f"annotation problem: {e}"))
    except MemoryError:
        return SeriesResult(job.id, skipped=(job.input_path, "out of memory while preparing"))
    except Exception as e:  # one bad series must never stop the others
        return SeriesResult(job.id, skipped=(job.input_path, f"unexpected error: {type(e).__name__}: {e}"))
    row = ManifestRow(
        id=job.id,
        patient_id=job.patient_id,
        source=job.source,
        input_path=job.input_path,
        path=f"volumes/{job.id}.npy",
        size=size,
        orig_shape=geom.orig_shape,
        orig_spacing=geom.orig_spacing,
        crop_start=geom.crop_start,
        crop_shape=geom.crop_shape,
        scale=geom.scale,
        spacing=geom.spacing,
        has_nodule=bool(nodules),
        n_nodules=len(nodules),
        split="",
    )
    try:
        atomic_save_npy(out_dir / row.path, cube)
        save_preview(out_dir / "previews" / f"{job.id}.png", cube, geom.spacing)
        record = {"fingerprint": fingerprint, "row": asdict(row), "nodules": [asdict(n) for n in nodules]}
        atomic_write_text(_record_path(out_dir, job.id), json.dumps(record, indent=1))
    except OSError as e:
        return SeriesResult(job.id, skipped=(job.input_path, f"could not write the output: {e}"))
    return SeriesResult(job.id, row=row, nodules=tuple(nodules))


def _record_path(out_dir: Path, job_id: str) -> Path:
    return out_dir / "records" / f"{job_id}.json"


def job_fingerprint(job: SeriesJob, size: int) -> str:
    """Hash of what a series' output depends on: code version, size, input files, annotations.

    Input files count by name, size and modification time (ns), so a header fixed in place
    (same size) is prepared again rather than reused.
    """
    h = hashlib.sha1()
    h.update(json.dumps([PREPARE_VERSION, size, job.kind, job.id]).encode())
    for f in sorted(job.files):
        try:
            st = os.stat(f)
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{f}:missing".encode())
    for x in job.xmls:
        h.update(Path(x).read_bytes() if os.path.exists(x) else b"?")
    h.update(json.dumps([asdict(n) for n in job.luna]).encode())
    return h.hexdigest()


def _reuse(out_dir: Path, job: SeriesJob, fingerprint: str) -> SeriesResult | None:
    rec_path = _record_path(out_dir, job.id)
    if not rec_path.exists():
        return None
    try:
        rec = json.loads(rec_path.read_text())
        if rec.get("fingerprint") != fingerprint:
            return None
        raw = dict(rec["row"])
        for k in ("orig_shape", "orig_spacing", "crop_start", "crop_shape", "scale", "spacing"):
            raw[k] = tuple(raw[k])
        row = ManifestRow(**raw)
        nodules = tuple(Nodule(**n) for n in rec["nodules"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (out_dir / row.path).exists() or not (out_dir / "previews" / f"{job.id}.png").exists():
        return None
    return SeriesResult(job.id, row=row, nodules=nodules)


def _init_worker(threads: int) -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def prepare_dataset(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    size: int = DEFAULT_SIZE,
    *,
    workers: int = 1,
    seed: int = 0,
    annotations: str | Path | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    excludes: Sequence[str] = (),
    progress: bool = True,
) -> PrepareReport:
    """Turn raw CT under ``inputs`` into a prepared dataset at ``out_dir`` (module doc).

    Args:
        inputs: folders (searched recursively) and / or files.
        out_dir: the dataset directory (created; an earlier run's results there are reused).
        size: cube edge S (>= 16); volumes are int16 HU (S, S, S) = (z, y, x).
        workers: processes for the header scan and the series.
        seed: seed of the train / validation / test split.
        annotations: a LUNA16 ``annotations.csv`` (world mm) besides those found in the inputs.
        fractions: (train, validation, test) shares.
        excludes: glob patterns of files / folders to ignore, besides the default ones.
        progress: show a tqdm bar (series done / left).

    Returns:
        the report; ``skipped`` is empty when every input was prepared.
    """
    from tqdm import tqdm

    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    try:
        for sub in ("volumes", "previews", "records"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create the dataset folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder is not writable")
    executor: Executor | None = None
    if workers > 1:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // workers)
        executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                       initializer=_init_worker, initargs=(threads,))
    try:
        disc: Discovery = discover(inputs, excludes=excludes, annotations=annotations, executor=executor)
        results: dict[str, SeriesResult] = {}
        todo: list[tuple[SeriesJob, str]] = []
        for job in disc.jobs:
            fp = job_fingerprint(job, size)
            reused = _reuse(out, job, fp)
            if reused is not None:
                results[job.id] = reused
            else:
                todo.append((job, fp))
        n_reused = len(results)
        bar = tqdm(total=len(disc.jobs), initial=n_reused, desc="prepare", unit="series", disable=not progress)
        try:
            if executor is None:
                for job, fp in todo:
                    results[job.id] = prepare_series(job, out, size, fp)
                    bar.update(1)
            else:
                futures = {executor.submit(prepare_series, job, out, size, fp): job for job, fp in todo}
                for fut in as_completed(futures):
                    job = futures[fut]
                    try:
                        results[job.id] = fut.result()
                    except BrokenProcessPool:  # a worker was killed (out of memory?): the rest cannot run
                        reason = "a worker process died (killed, out of memory?); run prepare again to continue"
                        results[job.id] = SeriesResult(job.id, skipped=(job.input_path, reason))
                    except Exception as e:
                        reason = f"worker failed: {type(e).__name__}: {e}"
                        results[job.id] = SeriesResult(job.id, skipped=(job.input_path, reason))
                    bar.update(1)
        finally:
            bar.close()
    finally:
        if executor is not None:
            executor.shutdown()
    return _finish(out, disc, results, n_reused, seed, fractions)


def _finish(
    out: Path, disc: Discovery, results: dict[str, SeriesResult], n_reused: int, seed: int, fractions: Sequence[float]
) -> PrepareReport:
    done = [results[j.id] for j in disc.jobs]
    rows = [r.row for r in done if r.row is not None]
    skipped = list(disc.skipped) + [r.skipped for r in done if r.skipped is not None]
    splits = assign_splits([r.patient_id for r in rows], [r.source for r in rows], [r.has_nodule for r in rows],
                           seed=seed, fractions=fractions)
    rows = [replace(r, split=s) for r, s in zip(rows, splits, strict=True)]
    nodules = [n for r in done for n in r.nodules]
    write_manifest(out / "manifest.csv", rows)
    write_nodules(out / "nodules.csv", nodules)
    write_skipped(out / "skipped.csv", skipped)
    return PrepareReport(prepared=rows, skipped=skipped, reused=n_reused, nodules=nodules, out_dir=out)
