"""`ctsgan prepare`: raw CT (DICOM series, NIfTI, MHD) -> prepared dataset (int16 HU cubes)."""

from __future__ import annotations

from pathlib import Path

import typer

#: exit code when some inputs were skipped (the others are still prepared)
EXIT_SKIPPED = 2


def register(app: typer.Typer) -> None:
    """Add ``prepare`` to ``app``."""

    @app.command("prepare")
    def prepare(
        inputs: list[Path] = typer.Argument(..., help="Folders (searched recursively) or files: DICOM, NIfTI, MHD."),
        out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write (re-running continues it)."),
        size: int = typer.Option(224, "--size", "-s", help="Cube edge S (>= 16): volumes become (S, S, S)."),
        workers: int = typer.Option(1, "--workers", "-j", help="Parallel processes."),
        seed: int = typer.Option(0, "--seed", help="Seed of the train/validation/test split."),
        annotations: Path | None = typer.Option(
            None, "--annotations", help="LUNA16 annotations.csv (seriesuid, coordX/Y/Z world mm, diameter_mm)."
        ),
        exclude: list[str] = typer.Option(
            [], "--exclude", help="Glob of files/folders to ignore (repeatable), besides the defaults."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Turn raw chest CT into a training dataset: DIR/volumes/<id>.npy, manifest.csv, nodules.csv,
        skipped.csv, previews/. Exit code 2 when some inputs were skipped (each is listed)."""
        from ctsgan.data.annotations import AnnotationError
        from ctsgan.data.prepare import prepare_dataset

        try:
            report = prepare_dataset(
                inputs, out, size, workers=workers, seed=seed, annotations=annotations,
                excludes=exclude, progress=progress,
            )
        except (ValueError, AnnotationError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        for path, reason in report.skipped:
            typer.echo(f"skipped: {path}: {reason}", err=True)
        by_split: dict[str, int] = {}
        for r in report.prepared:
            by_split[r.split] = by_split.get(r.split, 0) + 1
        splits = ", ".join(f"{k} {v}" for k, v in sorted(by_split.items()))
        typer.echo(
            f"prepared {len(report.prepared)} volumes ({report.reused} reused; {splits or 'none'}), "
            f"{len(report.nodules)} nodules, {len(report.skipped)} skipped -> {out}"
        )
        if report.skipped:
            raise typer.Exit(EXIT_SKIPPED)
