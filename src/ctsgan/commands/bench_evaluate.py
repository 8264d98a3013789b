"""`ctsgan bench evaluate`: Inception throughput and efficiency of the evaluation path."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``bench`` app."""

    @app.command("evaluate")
    def bench_evaluate_cmd(
        size: int = typer.Option(64, "--size", help="Slice edge S of the HU slices fed in (resized to 299)."),
        n: int = typer.Option(64, "-n", "--n", help="Slices per timed pass."),
        batch_size: int = typer.Option(32, "--batch-size", help="Slices per Inception forward pass."),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
        repeats: int = typer.Option(3, "--repeats", help="Timed passes (median reported)."),
        inception: Path | None = typer.Option(None, "--inception", help="TorchScript FID Inception (default: the bundled one)."),
        layout: str = typer.Option("auto", "--layout", help="Input memory layout: auto (NHWC on CPU, NCHW on CUDA) | nchw | nhwc."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Inception images per second, counted GFLOP per image, achieved GFLOP/s vs a matmul in the same run."""
        from ctsgan.bench.evaluate import bench_evaluate, format_table

        layouts = {"auto": None, "nchw": False, "nhwc": True}
        if layout not in layouts:
            typer.echo(f"error: --layout must be one of {', '.join(layouts)}, got {layout!r}", err=True)
            raise typer.Exit(1)
        try:
            result = bench_evaluate(
                size=size, n=n, batch_size=batch_size, device=device, repeats=repeats, inception=inception, channels_last=layouts[layout]
            )
        except (ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(result) if as_json else format_table(result))
