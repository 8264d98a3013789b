"""The downstream proof (paper Figure 3): 3D SqueezeNet nodule detection on real, synthetic and
synthetic-pre-trained + real-fine-tuned data.

What the classifier sees
    One whole volume per sample: the (z, y, x) HU cube is windowed to [-1024, 600] HU, mapped
    linearly to [0, 1], and resampled to ``input_size``^3 (area averaging when shrinking,
    trilinear when growing). The label is volume-level "has at least one nodule". This is the
    paper's task (nodule presence per volume); every regime and split goes through the same
    function, :func:`hu_to_classifier_input`.

Dataset construction (Figure 3(a))
    Real set (a prepared dataset dir): within each split, about half of the nodule scans get
    their nodules erased (label 0) and the rest keep them (label 1); about half of the clean
    scans get nodules injected (label 1) and the rest stay clean (label 0), chosen so that each
    split is balanced exactly (one extra negative when its size is odd). The split of every scan
    is the manifest's; a patient whose scans sit in two splits is an error.
    Synthetic set (a folder of generated volumes): half get nodules injected (label 1), half
    stay clean; a held-out fraction (``synthetic_val_fraction``) selects the model in the
    synthetic-only regime, so that regime never sees real data before the test.
    Injected nodules have the experiment cell's diameter (**mm**); real nodules that are kept
    keep their own sizes. The number of nodules per injected scan is the injector's choice
    (the GAN injector draws it from the LIDC distribution).

Injector and eraser are passed in as callables (dependency injection), so tests use simple
deterministic fakes and the CLI uses the GAN-based ones:

    inject_fn(hu, spacing_zyx, rng, diameter_mm) -> (hu, [(centre_zyx, diameter_mm), ...])
    erase_fn(hu, spacing_zyx, [(centre_zyx, diameter_mm), ...]) -> hu

Regimes per (size, seed) cell: ``real`` (train on real train, select on real validation),
``synthetic`` (train on synthetic train, select on synthetic validation) and
``pretrain-finetune`` (the ``synthetic`` cell's selected model, fine-tuned on real train,
selected on real validation). All three are tested on the balanced real test split. The seed
sets the classifier's initial weights (the same for ``real`` and ``synthetic``), the batch
order, and which scans get nodules erased / injected and where.

Output dir: ``config.yaml`` (training settings; a resume with other settings is refused),
``cells/<regime>_d<size>_s<seed>.json`` (one per finished cell, written atomically),
``checkpoints/synthetic_d<size>_s<seed>.pt`` (pre-trained weights for fine-tuning),
``results.csv``, ``summary.md`` and ``accuracy_vs_size.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from ctsgan.config import Config, parse_choice
from ctsgan.data.dataset import SPLITS, PreparedDataset
from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT, hu_to_unit
from ctsgan.io.atomic import atomic_path, atomic_torch_save, atomic_write_text
from ctsgan.networks.squeezenet3d import SqueezeNet3d, make_optimizer

NoduleSpec = tuple[tuple[float, float, float], float]  # (centre (z, y, x) in voxels, diameter in mm)
InjectFn = Callable[
    [np.ndarray, tuple[float, float, float], np.random.Generator, float], tuple[np.ndarray, list[NoduleSpec]]
]
EraseFn = Callable[[np.ndarray, tuple[float, float, float], list[NoduleSpec]], np.ndarray]
# view(hu (z, y, x), spacing_zyx, candidate centre (z, y, x) or None for a clean scan, rng) -> stored array
ViewFn = Callable[
    [np.ndarray, tuple[float, float, float], tuple[float, float, float] | None, np.random.Generator],
    np.ndarray,
]


class Regime(StrEnum):
    """Training regimes of the experiment (paper Figure 3(b))."""

    REAL = "real"
    SYNTHETIC = "synthetic"
    PRETRAIN_FINETUNE = "pretrain-finetune"


def parse_regime(value: str) -> Regime:
    """``"real"`` -> Regime.REAL; a bad name raises ValueError listing the valid ones."""
    return parse_choice(Regime, value, "regime")


class Origin(StrEnum):
    """How a labelled volume came to be."""

    KEPT = "kept"  # real nodule scan, nodules kept (label 1)
    ERASED = "erased"  # nodules erased (label 0)
    INJECTED = "injected"  # nodules injected (label 1)
    CLEAN = "clean"  # untouched clean scan (label 0)


class InputView(StrEnum):
    """What the classifier sees of a labelled scan."""

    VOLUME = "volume"  # the whole cube, resampled to input_size^3 (the paper's task)
    VOI = "voi"  # an input_size^3 cube around a candidate location, at the scan's resolution


def parse_view(value: str) -> InputView:
    """``"voi"`` -> InputView.VOI; a bad name raises ValueError listing the valid ones."""
    return parse_choice(InputView, value, "view")


class DetectionConfig(Config):
    """Training settings of the nodule-detection experiment (saved as ``config.yaml``)."""

    view: InputView = Field(
        default=InputView.VOLUME, description="volume (whole cube) or voi (candidate cube)"
    )
    input_size: int = Field(
        default=32, ge=16, description="classifier input edge (voxels): resampled cube or VOI"
    )
    voi_jitter: int = Field(
        default=4, ge=0, description="voi view: random offset (voxels, per axis) of the candidate"
    )
    width: float = Field(default=0.25, gt=0, description="SqueezeNet channel multiplier (1.0 = published)")
    dropout: float = Field(default=0.5, ge=0, lt=1)
    steps: int = Field(
        default=300, ge=1, description="optimizer steps on real data (real-only and fine-tuning)"
    )
    pretrain_steps: int = Field(default=300, ge=1, description="optimizer steps on synthetic data")
    batch_size: int = Field(default=8, ge=1)
    eval_every: int = Field(default=50, ge=1, description="validate (model selection) every this many steps")
    lr: float = Field(default=1e-4, gt=0)
    beta1: float = 0.9
    beta2: float = 0.999
    augment: bool = Field(default=True, description="random flips along z, y, x during training")
    synthetic_val_fraction: float = Field(default=0.1, gt=0, lt=1)
    hu_min: float = HU_MIN_DEFAULT
    hu_max: float = HU_MAX_DEFAULT


class NoduleModel(StrEnum):
    """Which injector / eraser the experiment uses."""

    AUTO = "auto"  # gan when both checkpoints are given, else classical
    GAN = "gan"  # the 3D conditional inpainting GANs (ctsgan.nodules), from checkpoints
    CLASSICAL = "classical"  # ctsgan.experiments.classical_nodules (no training needed)

    @classmethod
    def parse(cls, value: str) -> NoduleModel:
        return parse_choice(cls, value, "nodule model")


def make_nodule_fns(
    model: NoduleModel, injector: Path | None = None, eraser: Path | None = None
) -> tuple[InjectFn, EraseFn, str]:
    """(inject_fn, erase_fn, description) for the chosen nodule model.

    Args:
        model: gan, classical, or auto (gan when both checkpoints are given).
        injector, eraser: checkpoints of the GAN injector / eraser (``ctsgan nodules train``).
    """
    from ctsgan.experiments.classical_nodules import classical_erase, classical_inject

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


def hu_to_classifier_input(
    hu: np.ndarray, size: int, hu_min: float = HU_MIN_DEFAULT, hu_max: float = HU_MAX_DEFAULT
) -> np.ndarray:
    """HU volume (z, y, x) -> float32 (1, size, size, size) in [0, 1].

    The HU window [hu_min, hu_max] maps linearly onto [0, 1] (clipped), then the volume is
    resampled to size^3: area averaging when every axis shrinks, trilinear otherwise.
    """
    if hu.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
    unit = (np.asarray(hu_to_unit(np.asarray(hu), hu_min, hu_max)) + 1.0) * 0.5  # [0, 1]
    t = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))[None, None]  # (1, 1, z, y, x)
    if tuple(t.shape[2:]) != (size,) * 3:
        if min(t.shape[2:]) >= size:
            t = torch.nn.functional.interpolate(t, size=(size,) * 3, mode="area")
        else:
            t = torch.nn.functional.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)
    return t[0].clamp(0.0, 1.0).numpy()  # (1, size, size, size)


_LUNG_CACHE: dict[bytes, np.ndarray] = {}
_LUNG_CACHE_MAX = 1024


def cached_lung_mask(hu: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """:func:`ctsgan.nodules.lung_mask.lung_mask`, memoised on the volume's bytes and spacing.

    The grid rebuilds the same scans for every (size, seed); their lung masks do not change.
    """
    import hashlib

    from ctsgan.nodules.lung_mask import lung_mask

    arr = np.ascontiguousarray(hu)
    key = hashlib.sha1(
        arr.tobytes() + repr((arr.shape, str(arr.dtype), tuple(spacing_zyx))).encode()
    ).digest()
    if key not in _LUNG_CACHE:
        if len(_LUNG_CACHE) >= _LUNG_CACHE_MAX:
            _LUNG_CACHE.pop(next(iter(_LUNG_CACHE)))
        _LUNG_CACHE[key] = lung_mask(arr, spacing_zyx)
    return _LUNG_CACHE[key]


def lung_candidate(
    hu: np.ndarray, spacing_zyx: Sequence[float], rng: np.random.Generator, min_depth_mm: float
) -> tuple[float, float, float]:
    """A random lung voxel at least ``min_depth_mm`` from the lung wall (the injector's placement rule).

    Falls back to the deepest lung voxel, then to the volume centre when there is no lung.
    """
    from ctsgan.nodules.paste import lung_depth_mm

    depth = lung_depth_mm(cached_lung_mask(hu, spacing_zyx), spacing_zyx)
    cand = np.argwhere(depth > min_depth_mm)
    if len(cand):
        return tuple(float(v) for v in cand[rng.integers(len(cand))])  # type: ignore[return-value]
    if depth.max() > 0:
        return tuple(float(v) for v in np.unravel_index(int(np.argmax(depth)), hu.shape))  # type: ignore[return-value]
    return tuple(s / 2.0 for s in hu.shape)  # type: ignore[return-value]


def voi_classifier_input(
    hu: np.ndarray,
    centre_zyx: Sequence[float],
    size: int,
    rng: np.random.Generator,
    jitter: int = 4,
    hu_min: float = HU_MIN_DEFAULT,
    hu_max: float = HU_MAX_DEFAULT,
) -> np.ndarray:
    """An (1, size, size, size) float32 cube in [0, 1] around ``centre_zyx`` shifted by up to +-jitter voxels.

    Voxels outside the scan are air (:func:`ctsgan.nodules.voi.extract_voi`).
    """
    from ctsgan.nodules.voi import extract_voi

    shift = rng.integers(-jitter, jitter + 1, size=3) if jitter > 0 else np.zeros(3, dtype=int)
    centre = [float(c) + float(d) for c, d in zip(centre_zyx, shift, strict=True)]
    voi = extract_voi(np.asarray(hu), centre, size)
    return hu_to_classifier_input(voi, size, hu_min, hu_max)


def make_view(cfg: DetectionConfig, diameter_mm: float) -> ViewFn:
    """The classifier-input view of ``cfg`` (clean scans' VOIs sit at lung points deeper than the radius)."""
    if cfg.view is InputView.VOLUME:

        def volume_view(
            hu: np.ndarray,
            spacing: tuple[float, float, float],
            centre: tuple[float, float, float] | None,
            rng: np.random.Generator,
        ) -> np.ndarray:
            return hu_to_classifier_input(hu, cfg.input_size, cfg.hu_min, cfg.hu_max)

        return volume_view

    def voi_view(
        hu: np.ndarray,
        spacing: tuple[float, float, float],
        centre: tuple[float, float, float] | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        c = centre if centre is not None else lung_candidate(hu, spacing, rng, diameter_mm / 2.0)
        return voi_classifier_input(hu, c, cfg.input_size, rng, cfg.voi_jitter, cfg.hu_min, cfg.hu_max)

    return voi_view


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
            known: list[NoduleSpec] = [((n.z, n.y, n.x), n.diameter_mm) for n in data.nodules(row.id)]
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


@dataclass
class TensorSet:
    """x: (N, 1, s, s, s) float32 in [0, 1]; y: (N,) int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_volumes(cls, volumes: Sequence[LabelledVolume], split: str) -> TensorSet:
        sel = [v for v in volumes if v.split == split]
        if not sel:
            raise ValueError(f"no volumes in split {split!r}")
        x = torch.from_numpy(np.stack([np.asarray(v.volume, dtype=np.float32) for v in sel]))
        if x.ndim != 5:
            raise ValueError(f"expected classifier inputs (N, 1, s, s, s), got {tuple(x.shape)}")
        return cls(x, torch.tensor([v.label for v in sel], dtype=torch.int64))

    def __len__(self) -> int:
        return int(self.y.shape[0])


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, data: TensorSet, batch_size: int = 16) -> dict[str, float]:
    """Accuracy, ROC AUC (torchmetrics) and mean cross-entropy of ``model`` on ``data``."""
    from torchmetrics.functional.classification import binary_auroc

    model.eval()
    logits = torch.cat([model(data.x[i : i + batch_size]) for i in range(0, len(data), batch_size)])  # (N, 2)
    loss = torch.nn.functional.cross_entropy(logits, data.y).item()
    prob = logits.softmax(1)[:, 1]
    acc = (logits.argmax(1) == data.y).float().mean().item()
    auc = binary_auroc(prob, data.y).item() if 0 < int(data.y.sum()) < len(data) else float("nan")
    return {"accuracy": acc, "auc": auc, "loss": loss}


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips along z, y, x (one draw per axis per batch): x (B, 1, D, H, W)."""
    flips = torch.rand(3, generator=gen) < 0.5
    dims = [2 + i for i in range(3) if bool(flips[i])]
    return x.flip(dims) if dims else x


@dataclass
class TrainOutcome:
    """Best (model-selected) weights of one training run."""

    state: dict[str, torch.Tensor]
    best_step: int
    val: dict[str, float]


def train_classifier(
    model: torch.nn.Module,
    train: TensorSet,
    val: TensorSet,
    cfg: DetectionConfig,
    steps: int,
    seed: int,
    progress: bool = False,
    desc: str = "",
) -> TrainOutcome:
    """Adam (cfg.lr, betas) on shuffled mini-batches for ``steps`` steps; model selection on ``val``.

    Validation runs every ``cfg.eval_every`` steps and after the last one; the kept weights are
    those with the best validation accuracy (ties: lower validation loss, then earlier step).
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    best: TrainOutcome | None = None
    order = torch.randperm(len(train), generator=gen)
    pos = 0
    bar = tqdm(range(1, steps + 1), desc=desc, leave=False, disable=not progress)
    for step in bar:
        model.train()
        if pos + cfg.batch_size > len(train):
            order, pos = torch.randperm(len(train), generator=gen), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        x = train.x[idx]
        if cfg.augment:
            x = _augment(x, gen)
        loss = torch.nn.functional.cross_entropy(model(x), train.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{desc}: training loss is {loss.item()} at step {step}")
        if step % cfg.eval_every == 0 or step == steps:
            m = evaluate_classifier(model, val, cfg.batch_size)
            if best is None or (m["accuracy"], -m["loss"]) > (best.val["accuracy"], -best.val["loss"]):
                best = TrainOutcome({k: v.detach().clone() for k, v in model.state_dict().items()}, step, m)
            bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{m['accuracy']:.3f}")
    assert best is not None
    return best


# ----------------------------------------------------------------------------------------------
# The experiment grid


@dataclass(frozen=True)
class CellKey:
    regime: Regime
    diameter_mm: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.regime.value}_d{self.diameter_mm:g}_s{self.seed}"


@dataclass
class CellResult:
    """One finished (regime, size, seed) cell."""

    regime: str
    diameter_mm: float
    seed: int
    accuracy: float
    auc: float
    test_loss: float
    val_accuracy: float
    best_step: int
    steps: int
    n_train: int
    n_val: int
    n_test: int
    seconds: float


RESULT_COLUMNS = list(CellResult.__dataclass_fields__)


def _make_model(cfg: DetectionConfig, seed: int) -> SqueezeNet3d:
    torch.manual_seed(seed)
    return SqueezeNet3d(num_classes=2, in_channels=1, width=cfg.width, dropout=cfg.dropout)


def run_cell(
    key: CellKey,
    real: Sequence[LabelledVolume],
    synthetic: Sequence[LabelledVolume] | None,
    cfg: DetectionConfig,
    checkpoint_dir: Path,
    progress: bool = False,
) -> CellResult:
    """Train and test one cell; ``synthetic`` cells save their selected weights for fine-tuning.

    Args:
        key: regime, nodule diameter (mm) and seed.
        real: labelled real volumes (train / validation / test) already in classifier-input form.
        synthetic: labelled synthetic volumes (train / validation), needed by the synthetic regimes.
        cfg: training settings.
        checkpoint_dir: where ``synthetic_d<size>_s<seed>.pt`` is written / read.
    """
    t0 = time.perf_counter()
    test = TensorSet.from_volumes(real, "test")
    ckpt = checkpoint_dir / f"synthetic_d{key.diameter_mm:g}_s{key.seed}.pt"
    if key.regime is Regime.REAL:
        train, val = TensorSet.from_volumes(real, "train"), TensorSet.from_volumes(real, "validation")
        model = _make_model(cfg, key.seed)
        out = train_classifier(model, train, val, cfg, cfg.steps, key.seed, progress, key.name)
        steps = cfg.steps
    else:
        if synthetic is None:
            raise ValueError(f"{key.name}: this regime needs a synthetic set")
        s_train = TensorSet.from_volumes(synthetic, "train")
        s_val = TensorSet.from_volumes(synthetic, "validation")
        model = _make_model(cfg, key.seed)
        if key.regime is Regime.SYNTHETIC or not ckpt.exists():
            pre = train_classifier(
                model, s_train, s_val, cfg, cfg.pretrain_steps, key.seed, progress, key.name
            )
            atomic_torch_save(ckpt, pre.state)
        if key.regime is Regime.SYNTHETIC:
            train, val, out, steps = s_train, s_val, pre, cfg.pretrain_steps
        else:
            model.load_state_dict(torch.load(ckpt, weights_only=True))
            train, val = TensorSet.from_volumes(real, "train"), TensorSet.from_volumes(real, "validation")
            out = train_classifier(model, train, val, cfg, cfg.steps, key.seed, progress, key.name)
            steps = cfg.steps
    model.load_state_dict(out.state)
    m = evaluate_classifier(model, test, cfg.batch_size)
    return CellResult(
        regime=key.regime.value,
        diameter_mm=key.diameter_mm,
        seed=key.seed,
        accuracy=m["accuracy"],
        auc=m["auc"],
        test_loss=m["loss"],
        val_accuracy=out.val["accuracy"],
        best_step=out.best_step,
        steps=steps,
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        seconds=time.perf_counter() - t0,
    )


@dataclass
class ExperimentReport:
    """What one call of :func:`run_experiment` did."""

    ran: list[CellKey]
    skipped: list[CellKey]
    results: list[CellResult]
    out_dir: Path


def read_cell_results(out_dir: Path) -> list[CellResult]:
    """All finished cells under ``out_dir/cells`` (sorted by regime, size, seed)."""
    results = []
    for p in sorted((Path(out_dir) / "cells").glob("*.json")):
        try:
            results.append(CellResult(**json.loads(p.read_text())))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{p}: not a cell result ({e})") from e
    order = {r.value: i for i, r in enumerate(Regime)}
    return sorted(results, key=lambda r: (order.get(r.regime, 99), r.diameter_mm, r.seed))


def write_results_csv(path: Path, results: Sequence[CellResult]) -> None:
    """One row per cell (columns: RESULT_COLUMNS), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items()})
    atomic_write_text(path, buf.getvalue())


def _mean_std(values: Sequence[float]) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3f} (n=1)"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f} (n={len(vals)})"


def summary_table(results: Sequence[CellResult], metric: str = "accuracy") -> str:
    """Markdown table: one row per regime, one column per nodule diameter (mm), mean ± std over seeds.

    The std is the sample standard deviation (ddof=1) over seeds.
    """
    sizes = sorted({r.diameter_mm for r in results})
    regimes = [g.value for g in Regime if any(r.regime == g.value for r in results)]
    head = f"| {metric} \\ diameter (mm) | " + " | ".join(f"{s:g}" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for g in regimes:
        cells = [
            _mean_std([getattr(r, metric) for r in results if r.regime == g and r.diameter_mm == s])
            for s in sizes
        ]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_size(path: Path, results: Sequence[CellResult]) -> Path:
    """Figure 3(b)-like plot: test accuracy (mean ± std over seeds) vs nodule diameter, per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    sizes = sorted({r.diameter_mm for r in results})
    n_reg = len(Regime)
    bar_w = 0.8 / n_reg
    for k, g in enumerate(Regime):
        means, stds, xs, per_seed = [], [], [], []
        for j, s in enumerate(sizes):
            vals = [r.accuracy for r in results if r.regime == g.value and r.diameter_mm == s]
            if vals:
                xs.append(j + (k - (n_reg - 1) / 2) * bar_w)
                means.append(float(np.mean(vals)))
                stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
                per_seed.append(vals)
        if xs:
            ax.bar(xs, means, width=bar_w, yerr=stds, capsize=3, label=g.value)
            for x, vals in zip(xs, per_seed, strict=True):
                ax.plot([x] * len(vals), vals, "k.", ms=4)  # one dot per seed
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(sizes)), [f"{s:g}" for s in sizes])
    ax.set_xlabel("injected nodule diameter (mm)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("dots: single seeds; bars: mean ± std", fontsize=8)
    ax.legend(fontsize=8, loc="upper center", ncol=4, bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(out_dir: Path) -> list[CellResult]:
    """Rewrite results.csv, summary.md and the plot from the finished cells."""
    results = read_cell_results(out_dir)
    write_results_csv(out_dir / "results.csv", results)
    text = (
        "# Nodule detection: test accuracy (mean ± std over seeds)\n\n"
        + summary_table(results, "accuracy")
        + "\n# ROC AUC\n\n"
        + summary_table(results, "auc")
    )
    atomic_write_text(out_dir / "summary.md", text)
    if results:
        plot_accuracy_vs_size(out_dir / "accuracy_vs_size.png", results)
    return results


def _check_config(out_dir: Path, cfg: DetectionConfig, data_keys: dict[str, str]) -> None:
    """Write ``config.yaml`` on first use; refuse to resume with different settings."""
    import yaml

    path = out_dir / "config.yaml"
    current = {"training": cfg.model_dump(mode="json"), "data": data_keys}
    if path.exists():
        saved = yaml.safe_load(path.read_text()) or {}
        if saved != current:
            diff = [
                f"{sect}.{k}: {saved.get(sect, {}).get(k)!r} -> {current[sect].get(k)!r}"
                for sect in current
                for k in sorted(set(current[sect]) | set(saved.get(sect, {})))
                if saved.get(sect, {}).get(k) != current[sect].get(k)
            ]
            raise ValueError(
                f"{path}: this output dir was made with other settings ({'; '.join(diff)}); "
                "use a new --out or the same settings"
            )
        return
    atomic_write_text(path, yaml.safe_dump(current, sort_keys=False))


def run_experiment(
    real_dir: Path,
    synthetic: Path | None,
    out_dir: Path,
    sizes_mm: Sequence[float],
    seeds: Sequence[int],
    inject_fn: InjectFn,
    erase_fn: EraseFn,
    cfg: DetectionConfig | None = None,
    regimes: Sequence[Regime] = tuple(Regime),
    synthetic_limit: int | None = None,
    progress: bool = True,
) -> ExperimentReport:
    """Run the (regime, size, seed) grid, skipping cells already finished in ``out_dir``.

    Args:
        real_dir: prepared real dataset with train / validation / test splits.
        synthetic: generated volumes (folder) or a prepared dataset; needed unless only ``real`` runs.
        out_dir: results dir (see the module docstring); re-running resumes.
        sizes_mm: injected nodule diameters (mm).
        seeds: seeds (classifier init, batch order, nodule placement).
        inject_fn, erase_fn: nodule injector / eraser (module docstring).
        cfg: training settings (defaults: :class:`DetectionConfig`).
        regimes: which regimes to run.
        synthetic_limit: use only the first N synthetic volumes.
        progress: show tqdm bars.
    """
    from tqdm.auto import tqdm

    cfg = cfg or DetectionConfig()
    regimes = [parse_regime(str(r)) for r in regimes]
    needs_synth = any(r is not Regime.REAL for r in regimes)
    if needs_synth and synthetic is None:
        raise ValueError("the synthetic regimes need a synthetic source (--synthetic)")
    out_dir = Path(out_dir)
    (out_dir / "cells").mkdir(parents=True, exist_ok=True)
    data_keys = {
        "real": str(Path(real_dir).resolve()),
        "synthetic": str(Path(synthetic).resolve()) if synthetic else "",
        "synthetic_limit": str(synthetic_limit),
    }
    _check_config(out_dir, cfg, data_keys)

    # order inside a (size, seed) group: synthetic before pretrain-finetune (it makes the checkpoint)
    ordered = [r for r in Regime if r in regimes]
    keys = [CellKey(r, float(s), int(k)) for s in sizes_mm for k in seeds for r in ordered]
    done = {k for k in keys if (out_dir / "cells" / f"{k.name}.json").exists()}
    ran: list[CellKey] = []
    bar = tqdm(total=len(keys), desc="cells", disable=not progress, initial=len(done))
    for s in sizes_mm:
        for k in seeds:
            todo = [c for c in keys if c.diameter_mm == float(s) and c.seed == int(k) and c not in done]
            if not todo:
                continue
            bar.set_postfix_str(f"building sets d={s:g} mm seed={k}")
            view = make_view(cfg, float(s))
            real = build_real_set(Path(real_dir), float(s), int(k), inject_fn, erase_fn, view)
            synth = None
            if any(c.regime is not Regime.REAL for c in todo):
                assert synthetic is not None
                synth = build_synthetic_set(
                    Path(synthetic),
                    float(s),
                    int(k),
                    inject_fn,
                    view,
                    cfg.synthetic_val_fraction,
                    synthetic_limit,
                )
            for c in todo:
                bar.set_postfix_str(c.name)
                res = run_cell(c, real, synth, cfg, out_dir / "checkpoints", progress)
                atomic_write_text(out_dir / "cells" / f"{c.name}.json", json.dumps(asdict(res), indent=1))
                ran.append(c)
                bar.update(1)
            write_outputs(out_dir)
    bar.close()
    # outputs were rewritten after each group that ran; a call that ran nothing still refreshes them
    results = read_cell_results(out_dir) if ran else write_outputs(out_dir)
    return ExperimentReport(ran=ran, skipped=[k for k in keys if k in done], results=results, out_dir=out_dir)
