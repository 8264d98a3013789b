"""`ctsgan phantom`: write procedural chest CT phantoms (the built-in default data)."""

from __future__ import annotations

from pathlib import Path

import typer


def phantom(
    out: Path = typer.Option(..., "--out", help="Output folder for <id>.nii.gz (and annotations.csv, ground_truth/)."),
    n: int = typer.Option(8, "-n", "--n", help="Number of volumes."),
    size: int = typer.Option(224, "--size", help="Cube edge S (>= 16): volumes are S x S x S."),
    seed: int = typer.Option(0, "--seed", help="Base seed; volume i uses the seed sequence (seed, i)."),
    nodules: bool = typer.Option(False, "--nodules", help="Add lung nodules; write annotations.csv and ground_truth/."),
    workers: int = typer.Option(1, "--workers", help="Processes in parallel."),
) -> None:
    """Make N procedural chest CT volumes (int16 HU NIfTI) that `ctsgan prepare` reads."""
    import time

    from ctsgan.data.phantom import write_phantoms

    t0 = time.perf_counter()
    try:
        paths = write_phantoms(out, n, size, seed, nodules=nodules, workers=workers)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    dt = time.perf_counter() - t0
    typer.echo(f"wrote {len(paths)} phantom(s) of {size}^3 to {out} in {dt:.1f} s ({dt / max(1, len(paths)):.1f} s each)")
    if nodules:
        typer.echo(f"nodules: {out / 'annotations.csv'}, ground truth in {out / 'ground_truth'}")


def register(app: typer.Typer) -> None:
    """Add `phantom` to the top-level app."""
    app.command("phantom")(phantom)
