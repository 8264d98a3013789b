"""The labelled real and synthetic sets (Figure 3(a)) and the injector / eraser callables that build them."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctsgan.data.dataset import SPLITS, PreparedDataset
from ctsgan.experiments.nodule_detection.config import (
    EraseFn,
    InjectFn,
    NoduleModel,
    NoduleSpec,
    Origin,
    ViewFn,
)
from ctsgan.experiments.nodule_detection.views import cached_lung_mask


def make_nodule_fns(
    model: NoduleModel, injector: Path | None = None, eraser: Path | None = None
) -> tuple[InjectFn, EraseFn, str]:
    """(inject_fn, erase_fn, description) for the chosen nodule model.

    Args:
        model: gan, classical, or auto (gan when both checkpoints are given).
        injector, eraser: checkpoints of the GAN injector / eraser (``ctsgan nodules train``).
    """
    from ctsgan.nodules.classical import classical_erase, classical_inject

    if model is NoduleModel.AUTO:
        model = NoduleModel.GAN if injector is not None and eraser is not None else NoduleModel.CLASSICAL
    if model is NoduleModel.CLASSICAL:
        if injector is not None or eraser is not None:
            raise ValueError("--injector / --eraser are only used with --nodule-model gan")

        def inject(
            hu: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator, diameter_mm: float
        ) -> tuple[np.ndarray, list[NoduleSpec]]:
            return classical_inject(
                hu, spacing, rng, diameter_mm, count=1, lung=cached_lung_mask(hu, spacing)
            )

        def erase(
            hu: np.ndarray, spacing: tuple[float, float, float], nodules: list[NoduleSpec]
        ) -> np.ndarray:
            return classical_erase(hu, spacing, nodules)

        return (
            inject,
            erase,
            "classical (soft-tissue ball injector, shell-statistics eraser; one nodule per scan)",
        )
    return _gan_nodule_fns(injector, eraser)


def _gan_nodule_fns(injector: Path | None, eraser: Path | None) -> tuple[InjectFn, EraseFn, str]:
    """The GAN injector / eraser of :mod:`ctsgan.nodules`; nodule counts drawn from LIDC (>= 1)."""
    if injector is None or eraser is None:
        raise ValueError("--nodule-model gan needs both --injector and --eraser checkpoints")
    from ctsgan.nodules.erase import erase_nodules
    from ctsgan.nodules.inject import inject_nodules
    from ctsgan.nodules.inpainter import load_inpainter
    from ctsgan.nodules.lidc_stats import load_lidc_stats

    inj, era, stats = load_inpainter(injector), load_inpainter(eraser), load_lidc_stats()

    def inject(
        hu: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator, diameter_mm: float
    ) -> tuple[np.ndarray, list[NoduleSpec]]:
        return inject_nodules(
            hu, cached_lung_mask(hu, spacing), inj, spacing, rng, diameters_mm=diameter_mm, stats=stats
        )

    def erase(hu: np.ndarray, spacing: tuple[float, float, float], nodules: list[NoduleSpec]) -> np.ndarray:
        return erase_nodules(hu, nodules, era, spacing)

    return inject, erase, f"gan (injector {injector}, eraser {eraser}; nodules per scan drawn from LIDC)"


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass
class LabelledVolume:
    """One sample of the experiment.

    ``volume`` is whatever the builder's ``view`` made of the HU cube (by default the int16 HU
    cube itself, (z, y, x); in the experiment the classifier input (1, s, s, s) in [0, 1]).
    """

    id: str
    patient_id: str
    split: str
    label: int
    origin: Origin
    volume: np.ndarray
    nodules: list[NoduleSpec] = field(default_factory=list)


def _spacing3(spacing: Sequence[float]) -> tuple[float, float, float]:
    z, y, x = (float(v) for v in spacing)
    return (z, y, x)


def _rng(seed: int, diameter_mm: float, key: str) -> np.random.Generator:
    """Per-volume generator: depends on (seed, size, volume key) only, not on iteration order."""
    return np.random.default_rng([seed, int(round(diameter_mm * 1000)), zlib.crc32(key.encode())])


def _balanced_counts(n_nodule: int, n_clean: int) -> tuple[int, int]:
    """(nodule scans that keep nodules, clean scans to inject) giving n // 2 positives in total."""
    positives = (n_nodule + n_clean) // 2
    keep = (n_nodule + 1) // 2
    inject = min(max(positives - keep, 0), n_clean)
    keep = min(positives - inject, n_nodule)
    return keep, inject


def _candidate(
    origin: Origin,
    known: Sequence[NoduleSpec],
    placed: Sequence[NoduleSpec],
    key: str,
    seed: int,
    diameter_mm: float,
) -> tuple[float, float, float] | None:
    """The candidate location of a scan: a kept / erased / injected nodule's centre, None when clean."""
    pool = {Origin.KEPT: known, Origin.ERASED: known, Origin.INJECTED: placed}.get(origin, [])
    if not pool:
        return None
    pick = _rng(seed, diameter_mm, key + "/candidate").integers(len(pool))
    return tuple(float(v) for v in pool[int(pick)][0])  # type: ignore[return-value]


def _injected_origin(volume_id: str, nodules: Sequence[NoduleSpec]) -> Origin:
    """INJECTED, or CLEAN with a warning when the injector found no place for any nodule."""
    if nodules:
        return Origin.INJECTED
    warnings.warn(
        f"{volume_id}: the injector placed no nodule; labelled clean (the split is then unbalanced)",
        stacklevel=3,
    )
    return Origin.CLEAN


def patients_crossing_splits(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """(patient_id, split) pairs -> {patient: splits} for every patient found in more than one split."""
    seen: dict[str, set[str]] = {}
    for patient, split in pairs:
        seen.setdefault(patient, set()).add(split)
    return {p: s for p, s in seen.items() if len(s) > 1}


def build_real_set(
    dataset_dir: Path,
    diameter_mm: float,
    seed: int,
    inject_fn: InjectFn,
    erase_fn: EraseFn,
    view: ViewFn | None = None,
    splits: Sequence[str] = SPLITS,
) -> list[LabelledVolume]:
    """Make a prepared dataset source-agnostic and balanced (Figure 3(a)).

    Args:
        dataset_dir: prepared dataset (manifest.csv with patient_id, split, has_nodule; nodules.csv).
        diameter_mm: diameter of injected nodules (mm).
        seed: picks which scans are erased / injected and where nodules go.
        inject_fn, erase_fn: see the module docstring.
        view: maps each final HU cube (z, y, x) to what is stored (default: keep the HU cube).
        splits: the splits to build.

    Returns:
        Labelled volumes of all requested splits, each split balanced (n // 2 positives).

    Raises:
        ValueError: a patient's scans lie in more than one split, or a split has no volumes.
    """
    data = PreparedDataset(dataset_dir)
    crossing = patients_crossing_splits((r.patient_id, r.split) for r in data.rows)
    if crossing:
        shown = ", ".join(f"{p}: {sorted(s)}" for p, s in sorted(crossing.items())[:5])
        raise ValueError(f"{dataset_dir}/manifest.csv: patients in more than one split ({shown})")
    out: list[LabelledVolume] = []
    for split_index, split in enumerate(splits):
        indices = [i for i, r in enumerate(data.rows) if r.split == split]
        if not indices:
            raise ValueError(f"{dataset_dir}: no volumes in split {split!r}")
        nodule_idx = [i for i in indices if data.rows[i].has_nodule and data.nodules(data.rows[i].id)]
        clean_idx = [i for i in indices if not data.rows[i].has_nodule]
        unlocated = [data.rows[i].id for i in indices if data.rows[i].has_nodule and i not in nodule_idx]
        if unlocated:  # a nodule scan without coordinates can be neither erased nor trusted as clean
            warnings.warn(
                f"{dataset_dir}: {len(unlocated)} nodule scan(s) of split {split!r} have no rows in "
                f"nodules.csv and are left out: {unlocated[:5]}",
                stacklevel=2,
            )
        keep_n, inject_n = _balanced_counts(len(nodule_idx), len(clean_idx))
        pick = np.random.default_rng([seed, int(round(diameter_mm * 1000)), split_index])
        keep = set(pick.permutation(nodule_idx)[:keep_n].tolist()) if nodule_idx else set()
        inject = set(pick.permutation(clean_idx)[:inject_n].tolist()) if clean_idx else set()
        for i in sorted(set(nodule_idx) | set(clean_idx)):
            row = data.rows[i]
            hu = np.array(data.load(i), dtype=np.int16)
            spacing = _spacing3(row.spacing)
            known: list[NoduleSpec] = [n.spec for n in data.nodules(row.id)]
            if i in nodule_idx and i in keep:
                origin, nods = Origin.KEPT, known
            elif i in nodule_idx:
                hu = np.asarray(erase_fn(hu, spacing, known), dtype=np.int16)
                origin, nods = Origin.ERASED, []
            elif i in inject:
                res, nods = inject_fn(hu, spacing, _rng(seed, diameter_mm, row.id), diameter_mm)
                hu = np.asarray(res, dtype=np.int16)
                origin = _injected_origin(row.id, nods)
            else:
                origin, nods = Origin.CLEAN, []
            label = int(origin in (Origin.KEPT, Origin.INJECTED))
            stored = (
                hu
                if view is None
                else view(
                    hu,
                    spacing,
                    _candidate(origin, known, nods, row.id, seed, diameter_mm),
                    _rng(seed, diameter_mm, row.id + "/view"),
                )
            )
            out.append(LabelledVolume(row.id, row.patient_id, split, label, origin, stored, list(nods)))
    return out


def list_synthetic_volumes(source: Path) -> list[tuple[str, Path | None, int | None]]:
    """Volumes of a synthetic source as (id, file, dataset row index).

    ``source`` is a folder of ``.nii.gz`` / ``.nii`` / ``.npy`` volumes (as ``ctsgan generate``
    writes them; sorted by name) or a prepared dataset (its clean, status-ok volumes, all splits).
    """
    source = Path(source)
    if (source / "manifest.csv").exists():
        data = PreparedDataset(source)
        return [(r.id, None, i) for i, r in enumerate(data.rows) if not r.has_nodule]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: synthetic source is not a folder")
    files = sorted(p for p in source.iterdir() if p.name.endswith((".nii.gz", ".nii", ".npy")))
    if not files:
        raise ValueError(f"{source}: no .nii.gz / .nii / .npy volumes and no manifest.csv")
    return [(p.name.split(".")[0], p, None) for p in files]


def _read_synthetic(
    data: PreparedDataset | None, item: tuple[str, Path | None, int | None]
) -> tuple[np.ndarray, tuple[float, ...]]:
    from ctsgan.io.volumes import read_nifti

    vid, path, index = item
    if index is not None:
        assert data is not None
        return np.array(data.load(index), dtype=np.int16), tuple(float(s) for s in data.rows[index].spacing)
    assert path is not None
    if path.suffix == ".npy":
        warnings.warn(f"{path}: .npy holds no voxel spacing; 1 mm assumed, so nodule sizes in mm will be wrong "
                      "unless the volumes really have 1 mm voxels (generate with --format nifti)", stacklevel=2)
        return np.load(path, allow_pickle=False).astype(np.int16), (1.0, 1.0, 1.0)
    arr, spacing = read_nifti(path)
    return arr.astype(np.int16), spacing


def build_synthetic_set(
    source: Path,
    diameter_mm: float,
    seed: int,
    inject_fn: InjectFn,
    view: ViewFn | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
) -> list[LabelledVolume]:
    """Label a set of generated volumes: nodules injected into half, the rest left clean.

    Args:
        source: folder of generated volumes or a prepared dataset (see :func:`list_synthetic_volumes`).
        diameter_mm: diameter of injected nodules (mm); ``.npy`` volumes are taken as 1 mm voxels.
        seed: picks which volumes get nodules, where, and the train / validation split.
        inject_fn: see the module docstring.
        view: maps each final HU cube to what is stored (default: keep the HU cube).
        val_fraction: share of volumes held out as ``validation`` (at least 2 when possible).
        limit: use only the first ``limit`` volumes (by name).

    Returns:
        Labelled volumes, splits ``train`` and ``validation``, each balanced (n // 2 positives).
    """
    items = list_synthetic_volumes(source)
    if limit is not None:
        items = items[:limit]
    if len(items) < 4:
        raise ValueError(f"{source}: need at least 4 synthetic volumes, found {len(items)}")
    data = PreparedDataset(source) if (Path(source) / "manifest.csv").exists() else None
    pick = np.random.default_rng([seed, int(round(diameter_mm * 1000)), 7])
    order = pick.permutation(len(items))
    n_val = min(max(2, int(round(len(items) * val_fraction))), len(items) - 2)
    out: list[LabelledVolume] = []
    for split, idx in (("validation", order[:n_val]), ("train", order[n_val:])):
        inject = set(pick.permutation(idx)[: len(idx) // 2].tolist())
        for i in idx.tolist():
            vid = items[i][0]
            hu, raw_spacing = _read_synthetic(data, items[i])
            spacing = _spacing3(raw_spacing)
            nods: list[NoduleSpec] = []
            origin = Origin.CLEAN
            if i in inject:
                res, nods = inject_fn(hu, spacing, _rng(seed, diameter_mm, vid), diameter_mm)
                hu, origin = np.asarray(res, dtype=np.int16), _injected_origin(vid, nods)
            stored = (
                hu
                if view is None
                else view(
                    hu,
                    spacing,
                    _candidate(origin, [], nods, vid, seed, diameter_mm),
                    _rng(seed, diameter_mm, vid + "/view"),
                )
            )
            out.append(LabelledVolume(vid, vid, split, int(origin is Origin.INJECTED), origin, stored, nods))
    return out


# ----------------------------------------------------------------------------------------------
# Training one classifier


