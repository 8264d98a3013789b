"""Inject into / erase from every volume of a prepared dataset, writing a new prepared dataset.

Input and output are prepared-dataset dirs (:mod:`ctsgan.data.dataset`): ``volumes/<id>.npy``,
``manifest.csv`` (``has_nodule`` / ``n_nodules`` updated), ``nodules.csv`` (inject: the input's
nodules plus the new ones; erase: empty), ``skipped.csv`` (volumes that failed, with the reason;
one bad volume never stops the others) and ``previews/<id>.png``; erase also writes ``erased.csv``
(:mod:`ctsgan.nodules.erase_record`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctsgan.data.dataset import (
    ManifestRow,
    Nodule,
    PreparedDataset,
    read_manifest,
    read_skipped,
    write_manifest,
    write_nodules,
    write_skipped,
)
from ctsgan.io.atomic import atomic_save_npy
from ctsgan.nodules.erase import erase_nodules
from ctsgan.nodules.erase_record import ErasedNodule, erased_stats, write_erased
from ctsgan.nodules.inject import inject_nodules
from ctsgan.nodules.inpainter import Inpainter, InpainterKind
from ctsgan.nodules.lidc_stats import LidcStats, load_lidc_stats
from ctsgan.nodules.lung_mask import lung_mask
from ctsgan.nodules.voi import mask_radius_vox
from ctsgan.viz.preview import save_preview

__all__ = ["ApplyReport", "erase_dataset", "inject_dataset"]

log = logging.getLogger(__name__)


@dataclass
class ApplyReport:
    """What :func:`inject_dataset` / :func:`erase_dataset` wrote."""

    out_dir: Path
    volumes: int = 0
    nodules_before: int = 0
    nodules_after: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    method: str = ""
    erased: list[ErasedNodule] = field(default_factory=list)


#: files whose presence marks a folder as a prepared dataset (never overwritten by inject / erase)
DATASET_FILES = ("manifest.csv", "nodules.csv", "skipped.csv", "volumes")


def check_new_dataset_dir(out: Path, in_root: Path) -> None:
    """Refuse an output dir that is the input, a file, or already holds a dataset.

    Raises:
        ValueError: naming ``out`` and what is in the way.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; choose a new dir")
    if out.resolve() == in_root.resolve():
        raise ValueError(f"output dir {out} is the input dataset; choose a new dir")
    present = [name for name in DATASET_FILES if (out / name).exists()]
    if present:
        raise ValueError(f"output dir {out} already holds a dataset ({', '.join(present)}); choose a new dir")


def check_inject_options(diameter_mm: float | None, count: int | None) -> None:
    """Refuse impossible nodule sizes and counts.

    Raises:
        ValueError: ``diameter_mm`` not a finite number > 0, or ``count`` < 1.
    """
    if diameter_mm is not None and not (math.isfinite(float(diameter_mm)) and float(diameter_mm) > 0):
        raise ValueError(f"nodule diameter must be a finite number of mm > 0, got {diameter_mm}")
    if count is not None and int(count) < 1:
        raise ValueError(f"nodule count must be >= 1 per volume, got {count}")


def _run(
    in_dir: str | Path,
    out_dir: str | Path,
    split: str | None,
    per_volume: Callable[[int, ManifestRow, np.ndarray, list[Nodule]], tuple[np.ndarray, list[Nodule]]],
    progress: bool,
) -> ApplyReport:
    from tqdm import tqdm

    ds = PreparedDataset(in_dir, split=split)
    out = Path(out_dir)
    check_new_dataset_dir(out, ds.root)
    rep = ApplyReport(out_dir=out)
    rows: list[ManifestRow] = []
    nodules: list[Nodule] = []
    for i, row in enumerate(tqdm(ds.rows, disable=not progress, desc="volumes")):
        try:
            hu = np.asarray(ds.load(i, mmap=False))
            if hu.ndim != 3:
                raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
            before = ds.nodules(row.id)
            new, after = per_volume(i, row, hu, before)
            atomic_save_npy(out / row.path, new.astype(np.int16))
            save_preview(out / "previews" / f"{row.id}.png", new, row.spacing)
        except Exception as e:  # one bad volume must not stop the others
            log.warning("%s: %s", ds.root / row.path, e)
            rep.skipped.append((str(ds.root / row.path), f"{type(e).__name__}: {e}"))
            continue
        rows.append(dataclasses.replace(row, has_nodule=bool(after), n_nodules=len(after)))
        nodules.extend(after)
        rep.volumes += 1
        rep.nodules_before += len(before)
        rep.nodules_after += len(after)
    if ds.rows and not rows:
        path, reason = rep.skipped[0]
        raise ValueError(f"none of the {len(ds.rows)} volumes could be processed, nothing written; first: {path}: {reason}")
    write_manifest(out / "manifest.csv", rows)
    write_nodules(out / "nodules.csv", nodules)
    write_skipped(out / "skipped.csv", read_skipped(ds.root / "skipped.csv") + rep.skipped)
    return rep


def inject_dataset(
    in_dir: str | Path,
    out_dir: str | Path,
    injector: Inpainter,
    *,
    diameter_mm: float | None = None,
    count: int | None = None,
    seed: int = 0,
    split: str | None = None,
    stats: LidcStats | None = None,
    progress: bool = True,
) -> ApplyReport:
    """Inject nodules into every volume of a prepared dataset.

    Args:
        in_dir: prepared dataset dir.
        out_dir: new prepared dataset dir (volumes, manifest.csv, nodules.csv = input + new).
        injector: trained injector.
        diameter_mm: fixed diameter, or None to draw from LIDC.
        count: fixed count per volume, or None to draw from LIDC.
        seed: volume i uses ``np.random.default_rng([seed, i])`` (reproducible, order-independent).
        split: only this split (default all).
        stats: LIDC statistics (default :func:`load_lidc_stats` when anything is drawn).
        progress: tqdm bar.
    """
    check_inject_options(diameter_mm, count)
    if injector.kind != InpainterKind.INJECTOR:
        raise ValueError(f"nodules inject needs an injector checkpoint, got an {injector.kind.value}")
    if stats is None and (diameter_mm is None or count is None):
        stats = load_lidc_stats()

    def one(i: int, row: ManifestRow, hu: np.ndarray, before: list[Nodule]) -> tuple[np.ndarray, list[Nodule]]:
        rng = np.random.default_rng([seed, i])
        lung = lung_mask(hu, row.spacing)
        old = [n.spec for n in before]
        new, placed = inject_nodules(hu, lung, injector, row.spacing, rng, diameter_mm, count, stats=stats, avoid=old)
        vox = float(np.mean(row.spacing))
        added = [Nodule(row.id, c[0], c[1], c[2], d / vox, d) for c, d in placed]
        return new, before + added

    return _run(in_dir, out_dir, split, one, progress)


def eraser_extent_mm(eraser: Inpainter, diameter_mm: float, spacing_zyx: Sequence[float]) -> float:
    """Radius (mm) beyond which a GAN eraser leaves the volume unchanged: mask sphere + blend ramp."""
    cfg = eraser.config
    d = min(float(diameter_mm), cfg.max_diameter_vox() * min(float(s) for s in spacing_zyx))
    radii = mask_radius_vox(d, spacing_zyx, cfg.mask_scale, cfg.mask_margin_vox)
    return max((r + cfg.blend_vox) * float(s) for r, s in zip(radii, spacing_zyx, strict=True))


def erase_dataset(
    in_dir: str | Path,
    out_dir: str | Path,
    eraser: Inpainter | None = None,
    *,
    split: str | None = None,
    progress: bool = True,
    seed: int = 0,
    method: str | None = None,
) -> ApplyReport:
    """Erase every nodule listed in ``nodules.csv``: the paper's nodule-free training set.

    The output is a new prepared dataset: the same manifest rows (``has_nodule`` 0, volumes
    under the new dir), an empty ``nodules.csv``, ``skipped.csv``, previews, and ``erased.csv``
    (:mod:`ctsgan.nodules.erase_record`): per nodule, the method and the mean HU in its region
    before / after against the lung parenchyma around it.

    Args:
        in_dir: prepared dataset dir.
        out_dir: new dir (must not hold a dataset).
        eraser: a trained eraser, or None for the classical eraser
            (:func:`ctsgan.nodules.classical.classical_erase` with the volume's lung
            mask: each nodule's ball of 1.5 radii + 1 voxel, within the lung mask, refilled with
            parenchyma texture at the mean HU of the lung in a shell around it).
        split: only this split (default all).
        progress: tqdm bar.
        seed: classical eraser texture seed (volume i uses ``seed + i``).
        method: the name written to ``erased.csv`` (default ``classical``, or ``eraser`` for a
            GAN eraser; the CLI passes the checkpoint path).

    Raises:
        ValueError: ``eraser`` is not an eraser, or a nodule centre lies outside its volume
            (nothing is written; erasing around it would silently drop the volume).
    """
    from ctsgan.nodules.classical import classical_erase, classical_erase_extent_mm

    if eraser is not None and eraser.kind != InpainterKind.ERASER:
        raise ValueError(f"nodules erase needs an eraser checkpoint, got an {eraser.kind.value}")
    name = method or ("classical" if eraser is None else "eraser")
    ds = PreparedDataset(in_dir, split=split)
    outside = [
        f"{n.volume_id} ({n.z:g}, {n.y:g}, {n.x:g})"
        for row in ds.rows
        for n in ds.nodules(row.id)
        if not all(-0.5 <= c <= row.size - 0.5 for c in (n.z, n.y, n.x))
    ]
    if outside:
        raise ValueError(
            f"{ds.root / 'nodules.csv'}: {len(outside)} nodule centre(s) outside their {ds.rows[0].size}^3 volume "
            f"(z, y, x voxels): {', '.join(outside[:3])}{' ...' if len(outside) > 3 else ''}; nothing written"
        )
    records: list[ErasedNodule] = []

    def one(i: int, row: ManifestRow, hu: np.ndarray, before: list[Nodule]) -> tuple[np.ndarray, list[Nodule]]:
        if not before:
            return hu, []
        sp = tuple(float(s) for s in row.spacing)
        lung = lung_mask(hu, sp)
        if eraser is None:
            specs = [n.spec for n in before]
            new = classical_erase(hu, sp, specs, seed=seed + i, lung=lung)  # type: ignore[arg-type]
        else:
            new = erase_nodules(hu, before, eraser, sp)
        for n in before:
            ext = classical_erase_extent_mm(n.diameter_mm, sp) if eraser is None else eraser_extent_mm(eraser, n.diameter_mm, sp)
            others = [((m.z, m.y, m.x), m.diameter_mm) for m in before if m is not n]
            records.append(erased_stats(row.id, hu, new, lung, (n.z, n.y, n.x), n.diameter_mm, sp, ext, name, others))
        return new, []

    rep = _run(in_dir, out_dir, split, one, progress)
    rep.method = name
    written = {r.id for r in read_manifest(Path(out_dir) / "manifest.csv")}
    rep.erased = [r for r in records if r.volume_id in written]  # not the volumes that failed to write
    records = rep.erased
    write_erased(Path(out_dir) / "erased.csv", records)
    return rep
