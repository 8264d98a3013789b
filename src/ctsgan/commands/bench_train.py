"""`ctsgan bench train`: training steps per second, FLOPs per step and a per-part profile."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``bench`` app."""

    @app.command("train")
    def bench_train_cmd(
        config: str = typer.Option("cpu64", "--config", help="Preset (tiny, cpu64, paper, paper224) or a YAML path."),
        model: str = typer.Option("ctsgan", "--model", help="Registered model (ctsgan, gan3d)."),
        steps: int = typer.Option(20, "--steps", help="Timed steps."),
        warmup: int = typer.Option(3, "--warmup", help="Untimed steps first."),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Steps/s, counted GFLOP per step, efficiency vs a same-run matmul, and where a step's time goes."""
        from ctsgan.bench.train import bench_train, format_table

        try:
            result = bench_train(model=model, config=config, steps=steps, warmup=warmup, device=device)
        except (ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(result) if as_json else format_table(result))
