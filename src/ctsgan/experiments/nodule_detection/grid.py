"""The experiment grid: one cell per (regime, nodule size, seed), resumable, and the run over all of them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ctsgan.experiments.nodule_detection.config import (
    DetectionConfig,
    EraseFn,
    InjectFn,
    InputView,
    Regime,
    parse_regime,
)
from ctsgan.experiments.nodule_detection.data import LabelledVolume, build_real_set, build_synthetic_set
from ctsgan.experiments.nodule_detection.report import (
    CellKey,
    CellResult,
    ExperimentReport,
    read_cell_results,
    write_outputs,
)
from ctsgan.experiments.nodule_detection.training import (
    TensorSet,
    evaluate_classifier,
    limit_training_set,
    test_outcomes,
    train_classifier,
)
from ctsgan.experiments.nodule_detection.views import make_view
from ctsgan.io.atomic import atomic_torch_save, atomic_write_text
from ctsgan.networks.squeezenet3d import SqueezeNet3d


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
        checkpoint_dir: where ``synthetic_d<size>_s<seed>.pt`` is written / read; each training's
            validation log goes to ``checkpoint_dir/../logs/<cell>[-pretrain]/metrics.jsonl``.
    """
    logs = checkpoint_dir.parent / "logs"
    t0 = time.perf_counter()
    test = TensorSet.from_volumes(real, "test")
    ckpt = checkpoint_dir / f"synthetic_d{key.diameter_mm:g}_s{key.seed}.pt"
    real_train = TensorSet.from_volumes(real, "train")
    if key.regime is not Regime.REAL_ALL:  # the regimes compared use the small real set
        real_train = limit_training_set(real_train, cfg.real_train_limit, key.seed)
    if key.regime in (Regime.REAL, Regime.REAL_ALL):
        train, val = real_train, TensorSet.from_volumes(real, "validation")
        model = _make_model(cfg, key.seed)
        out = train_classifier(model, train, val, cfg, cfg.steps, key.seed, progress, key.name, logs / key.name)
        steps = cfg.steps
    else:
        if synthetic is None:
            raise ValueError(f"{key.name}: this regime needs a synthetic set")
        s_train = TensorSet.from_volumes(synthetic, "train")
        s_val = TensorSet.from_volumes(synthetic, "validation")
        model = _make_model(cfg, key.seed)
        if key.regime is Regime.SYNTHETIC or not ckpt.exists():
            pre = train_classifier(
                model, s_train, s_val, cfg, cfg.pretrain_steps, key.seed, progress, key.name, logs / f"{key.name}-pretrain"
            )
            atomic_torch_save(ckpt, pre.state)
        if key.regime is Regime.SYNTHETIC:
            train, val, out, steps = s_train, s_val, pre, cfg.pretrain_steps
        else:
            model.load_state_dict(torch.load(ckpt, weights_only=True))
            train, val = real_train, TensorSet.from_volumes(real, "validation")
            out = train_classifier(model, train, val, cfg, cfg.steps, key.seed, progress, key.name, logs / key.name)
            steps = cfg.steps
    model.load_state_dict(out.state)
    m = evaluate_classifier(model, test, cfg.batch_size)
    correct = test_outcomes(model, test, cfg.batch_size)
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
        test_correct=correct,
        test_origins=[v.origin.value for v in real if v.split == "test"],  # TensorSet.from_volumes' order
        test_nodule_mm=[max((d for _, d in v.nodules), default=0.0) for v in real if v.split == "test"],
    )


def nodule_input_voxels(diameter_mm: float, spacing_zyx: Sequence[float], cube: int, cfg: DetectionConfig) -> float:
    """A nodule's diameter in classifier-input voxels along the coarsest axis: the whole cube
    resampled to ``input_size`` (``volume`` view) or the scan's own voxels (``voi`` view)."""
    voxel_mm = max(float(s) for s in spacing_zyx)
    if cfg.view is InputView.VOLUME:
        voxel_mm *= cube / cfg.input_size
    return diameter_mm / voxel_mm


def median_geometry(real_dir: Path) -> tuple[list[float], int] | None:
    """(median voxel spacing (z, y, x) mm, median cube edge) of a prepared dataset; None when empty."""
    import statistics

    from ctsgan.data.dataset import PreparedDataset

    rows = PreparedDataset(real_dir).rows
    if not rows:
        return None
    return [statistics.median(float(r.spacing[i]) for r in rows) for i in range(3)], int(statistics.median(r.size for r in rows))


def visible_diameter_mm(real_dir: Path, cfg: DetectionConfig) -> float:
    """The smallest nodule diameter (mm) spanning ``cfg.min_nodule_voxels`` classifier-input voxels
    in ``real_dir``'s median geometry (0 when the dataset is empty)."""
    geometry = median_geometry(real_dir)
    if geometry is None:
        return 0.0
    spacing, cube = geometry
    return cfg.min_nodule_voxels / nodule_input_voxels(1.0, spacing, cube, cfg)


def check_nodules_visible(real_dir: Path, sizes_mm: Sequence[float], cfg: DetectionConfig) -> None:
    """Refuse nodule sizes the classifier cannot see: fewer than ``cfg.min_nodule_voxels`` input
    voxels across (at the dataset's median spacing); the message names an input size that works."""
    if cfg.min_nodule_voxels <= 0 or (geometry := median_geometry(real_dir)) is None:
        return
    spacing, cube = geometry
    small = [d for d in sizes_mm if nodule_input_voxels(float(d), spacing, cube, cfg) < cfg.min_nodule_voxels]
    if not small:
        return
    d = min(small)
    have = nodule_input_voxels(float(d), spacing, cube, cfg)
    need = math.ceil(cfg.min_nodule_voxels * max(spacing) * cube / d / 8) * 8  # SqueezeNet-friendly multiple of 8
    if cfg.view is InputView.VOI or need > cube:  # upsampling past the prepared cube adds no detail
        fix = (f"nodules of at least {cfg.min_nodule_voxels * max(spacing):.0f} mm, or data prepared at "
               f"--size {need} or more (the cube itself is too coarse"
               + (": the voi view already uses the scan's own voxels)" if cfg.view is InputView.VOI else ")"))
    else:
        fix = f"--input-size {need} (the whole {cube}^3 cube at {need}^3) or --view voi (the scan's own voxels)"
    raise ValueError(
        f"a {d:g} mm nodule spans {have:.1f} classifier-input voxels ({cfg.view.value} view, input {cfg.input_size}, "
        f"{max(spacing):g} mm voxels in a {cube}^3 cube): below {cfg.min_nodule_voxels:g}, nothing to detect; use {fix}"
    )


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
    regimes: Sequence[Regime] | None = None,
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
        regimes: which regimes to run (default: real, synthetic, pretrain-finetune, and the
            positive control real-all when ``cfg.real_train_limit`` is set).
        synthetic_limit: use only the first N synthetic volumes.
        progress: show tqdm bars.
    """
    from tqdm.auto import tqdm

    cfg = cfg or DetectionConfig()
    if regimes is None:
        regimes = [r for r in Regime if r is not Regime.REAL_ALL or cfg.real_train_limit is not None]
    regimes = [parse_regime(str(r)) for r in regimes]
    if Regime.REAL_ALL in regimes and cfg.real_train_limit is None:
        raise ValueError("the positive control real-all compares against a smaller real set: set real_train_limit")
    check_nodules_visible(Path(real_dir), sizes_mm, cfg)
    visible_mm = visible_diameter_mm(Path(real_dir), cfg)
    needs_synth = any(r in (Regime.SYNTHETIC, Regime.PRETRAIN_FINETUNE) for r in regimes)
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
            if any(c.regime in (Regime.SYNTHETIC, Regime.PRETRAIN_FINETUNE) for c in todo):
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
                res = replace(run_cell(c, real, synth, cfg, out_dir / "checkpoints", progress), visible_mm=visible_mm)
                atomic_write_text(out_dir / "cells" / f"{c.name}.json", json.dumps(asdict(res), indent=1))
                ran.append(c)
                bar.update(1)
            write_outputs(out_dir)
    bar.close()
    # outputs were rewritten after each group that ran; a call that ran nothing still refreshes them
    results = read_cell_results(out_dir) if ran else write_outputs(out_dir)
    return ExperimentReport(ran=ran, skipped=[k for k in keys if k in done], results=results, out_dir=out_dir)
