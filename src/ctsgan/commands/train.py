"""`ctsgan train`: train a GAN (CT-SGAN, the 3D GAN baseline, ...) on a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""

    @app.command("train")
    def train_cmd(
        data: Path = typer.Option(..., "--data", help="Prepared dataset dir (its 'train' split is used)."),
        out: Path = typer.Option(..., "--out", help="Run dir: config.yaml, checkpoints/, metrics.jsonl, tensorboard/, previews/."),
        model: str = typer.Option("ctsgan", "--model", help="Registered model: ctsgan, gan3d, ..."),
        config: str | None = typer.Option(None, "--config", help="Preset (tiny, cpu64, paper224) or YAML path; not needed with --resume."),
        steps: int | None = typer.Option(None, "--steps", help="Total steps to reach (overrides the config)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly (models, optimizers, step, RNGs)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Train a GAN. Multi-GPU / multi-node: launch this command with torchrun."""
        from ctsgan.config import ConfigError
        from ctsgan.training import TrainingDivergedError, train
        from ctsgan.training.recipes import get_recipe

        try:
            if dry_run:
                recipe = get_recipe(model)
                cfg = recipe.load_config(config or "tiny")
                if steps is not None:
                    cfg.steps = steps
                typer.echo(cfg.to_yaml())
                return
            if config is None and not resume:
                raise ValueError("--config is required for a new run (a preset name or a YAML path)")
            last = train(model, config, data, out, steps=steps, resume=resume, progress=progress)
        except (ValueError, ConfigError, FileNotFoundError, FileExistsError, TrainingDivergedError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"last checkpoint: {last}")
