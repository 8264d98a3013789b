"""`ctsgan quickstart`: the whole default job on built-in phantom data, in minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to ``app``."""

    @app.command("quickstart")
    def quickstart_cmd(
        out: Path = typer.Option(Path("quickstart-out"), "--out", help="Output folder for everything."),
        minutes: float = typer.Option(7.0, "--minutes", help="Training budget in minutes."),
        n_phantoms: int = typer.Option(12, "--phantoms", help="Phantoms to make and train on."),
        n_generate: int = typer.Option(4, "-n", "--n", help="Volumes to generate at the end."),
        seed: int = typer.Option(0, "--seed", help="Seed of phantoms, split, training and generation."),
    ) -> None:
        """Phantoms -> prepare (64^3) -> train CT-SGAN cpu64 -> generate with previews -> learning numbers."""
        import time

        from ctsgan.experiments.quickstart import format_learning, run_quickstart

        t0 = time.perf_counter()
        try:
            res = run_quickstart(out, n_phantoms=n_phantoms, train_seconds=60 * minutes, n_generate=n_generate,
                                 seed=seed, say=typer.echo)
        except (ValueError, FileExistsError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        typer.echo("")
        typer.echo(f"done in {(time.perf_counter() - t0) / 60:.1f} min "
                   f"({', '.join(f'{k} {v:.0f} s' for k, v in res.seconds.items())})")
        typer.echo(f"  real data (phantoms):   {res.phantoms}")
        typer.echo(f"  prepared dataset:       {res.dataset}")
        typer.echo(f"  run (checkpoints, logs, previews): {res.run}  (tensorboard --logdir {res.run / 'tensorboard'})")
        typer.echo(f"  generated volumes:      {res.generated[0].parent}")
        typer.echo(f"  previews:               {res.previews}")
        typer.echo("")
        typer.echo("Learning check (body HU distributions vs the real training volumes; lower W1 is closer):")
        typer.echo(format_learning(res.learning))
        typer.echo(f"(numbers also in {res.out_dir / 'learning.json'})")
