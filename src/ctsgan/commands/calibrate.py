"""`ctsgan calibrate`: fit a checkpoint's HU calibration (ctsgan.generation.calibration)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to ``app``."""

    @app.command("calibrate")
    def calibrate_cmd(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint file, or a run dir (its latest checkpoint)."),
        data: Path | None = typer.Option(
            None, "--data", help="Prepared dataset it was trained on (default: the folder recorded in the checkpoint)."
        ),
        volumes: int = typer.Option(16, "--volumes", help="Generated volumes to fit on."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    ) -> None:
        """Fit the monotone HU map from the generator's body-HU distribution to the training set's;
        `ctsgan generate` applies it from then on (--raw-hu: not)."""
        import json

        from ctsgan.generation.calibration import calibrate_checkpoint

        try:
            path = calibrate_checkpoint(checkpoint, data, volumes=volumes, device=device)
        except (ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        d = json.loads(path.read_text())
        typer.echo(f"wrote {path} ({len(d['source'])} landmarks, step {d['step']}, "
                   f"{d['volumes']} generated vs {d['real_volumes']} training volumes)")
