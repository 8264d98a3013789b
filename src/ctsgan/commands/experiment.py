"""`ctsgan experiment nodule-detection`: the paper's Figure 3 experiment (see docs/detection.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _floats(text: str, what: str) -> list[float]:
    try:
        vals = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise typer.BadParameter(f"{what} must be positive numbers, got {text!r}")
    return vals


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise typer.BadParameter(f"{what} is empty")
    return vals


def nodule_detection(
    real: Path = typer.Option(..., "--real", help="Prepared real dataset (train / validation / test splits)."),
    synthetic: Path | None = typer.Option(
        None, "--synthetic", help="Generated volumes (folder of .nii.gz/.npy) or a prepared dataset."
    ),
    out: Path = typer.Option(..., "--out", help="Results dir; running again resumes (finished cells are skipped)."),
    sizes: str = typer.Option("14,16", "--sizes", help="Injected nodule diameters in mm, comma-separated."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds, comma-separated (init, batches, nodule placement)."),
    regimes: str = typer.Option(
        "", "--regimes",
        help="Any of real, synthetic, pretrain-finetune, real-all (default: the first three, plus real-all with "
        "--real-train-limit).",
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML of training settings (DetectionConfig)."),
    steps: int | None = typer.Option(None, "--steps", help="Steps on real data (real-only and fine-tuning)."),
    pretrain_steps: int | None = typer.Option(None, "--pretrain-steps", help="Steps on synthetic data."),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Validate every N steps (model selection)."),
    view: str | None = typer.Option(
        None, "--view", help="volume (whole cube, resampled; the paper) or voi (cube around a candidate)."
    ),
    input_size: int | None = typer.Option(None, "--input-size", help="Classifier input edge (voxels)."),
    width: float | None = typer.Option(None, "--width", help="SqueezeNet channel multiplier (1.0 = published)."),
    real_train_limit: int | None = typer.Option(
        None, "--real-train-limit",
        help="Real training scans of the compared regimes (balanced subset); also runs real-all, the positive control.",
    ),
    n_synthetic: int | None = typer.Option(None, "--n-synthetic", help="Use only the first N synthetic volumes."),
    nodule_model: str = typer.Option(
        "auto", "--nodule-model", help="gan (needs --injector/--eraser), classical, or auto (gan if given)."
    ),
    injector: Path | None = typer.Option(None, "--injector", help="Nodule injector checkpoint (ctsgan nodules train)."),
    eraser: Path | None = typer.Option(None, "--eraser", help="Nodule eraser checkpoint (ctsgan nodules train)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Real vs synthetic vs synthetic-pre-trained nodule detection (3D SqueezeNet), per size and seed."""
    import torch

    from ctsgan.config import ConfigError
    from ctsgan.experiments.nodule_detection import (
        DetectionConfig,
        NoduleModel,
        make_nodule_fns,
        parse_regime,
        run_experiment,
    )
    from ctsgan.experiments.nodule_detection.report import interval_table, verdict

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cfg = DetectionConfig.from_yaml(config) if config is not None else DetectionConfig()
        overrides: dict[str, Any] = {
            "steps": steps, "pretrain_steps": pretrain_steps, "batch_size": batch_size,
            "eval_every": eval_every, "input_size": input_size, "width": width, "view": view,
            "real_train_limit": real_train_limit,
        }
        cfg = DetectionConfig.from_dict(
            {**cfg.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}, source="command line"
        )
        regime_list = [parse_regime(r.strip()) for r in regimes.split(",") if r.strip()] or None
        inject_fn, erase_fn, label = make_nodule_fns(NoduleModel.parse(nodule_model), injector, eraser)
    except (ValueError, ConfigError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"nodule model: {label}")
    try:
        report = run_experiment(
            real, synthetic, out, _floats(sizes, "--sizes"), _ints(seeds, "--seeds"), inject_fn, erase_fn,
            cfg=cfg, regimes=regime_list, synthetic_limit=n_synthetic, progress=progress,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"ran {len(report.ran)} cell(s), skipped {len(report.skipped)} finished")
    typer.echo(verdict(report.results))
    typer.echo(interval_table(report.results))
    typer.echo(f"results: {out / 'results.csv'}\nsummary: {out / 'summary.md'}\nplot:    {out / 'accuracy_vs_size.png'}")


def register(app: typer.Typer) -> None:
    """Add `nodule-detection` to the `experiment` app."""
    app.command("nodule-detection")(nodule_detection)
