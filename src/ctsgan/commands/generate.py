"""`ctsgan generate`: sample synthetic volumes from a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``generate`` to ``app``."""

    @app.command("generate")
    def generate_cmd(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint file, or a run dir (its latest checkpoint)."),
        n: int = typer.Option(..., "-n", "--n", help="Number of volumes (over all torchrun ranks)."),
        out: Path = typer.Option(..., "--out", help="Output dir (volumes + previews/)."),
        seed: int = typer.Option(0, "--seed", help="Volume i is drawn from its own seed derived from (seed, i)."),
        fmt: str = typer.Option("nifti", "--format", help="nifti | dicom | npy"),
        slices: int | None = typer.Option(None, "--slices", help="Axial slices per volume (CT-SGAN: any L >= 3)."),
        size: int | None = typer.Option(None, "--size", help="Output edge for models that resample (gan3d)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        dtype: str = typer.Option("fp32", "--dtype", help="fp32 | bf16"),
        chunk: int | None = typer.Option(None, "--chunk", help="2D slices per generator call (memory / speed)."),
        previews: bool = typer.Option(True, "--previews/--no-previews", help="Write previews/<name>.png."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace volumes of the same names already in --out."),
        resume: bool = typer.Option(
            False, "--resume", help="Keep the volumes already in --out (complete: files are written atomically) and make the rest."
        ),
        batch: int | None = typer.Option(None, "--batch", help="Volumes per generator call (default for CT-SGAN: 8 at 64^3 on CPU, 1 at 224^3 and on CUDA)."),
        writers: int | None = typer.Option(
            None, "--writers", help="Writer processes for compression / files (default: CUDA cores - 1 up to 8; CPU cores / 4, at least 1; 0: in this process)."
        ),
        raw_hu: bool = typer.Option(
            False, "--raw-hu", help="Write the generator's own HU, without the checkpoint's HU calibration (ctsgan calibrate)."
        ),
        guard: Path | None = typer.Option(
            None, "--guard", help="Prepared dataset the model trained on: write no volume closer to one of its "
            "training scans than --guard-distance; draw more until n pass (decisions in OUT/guard-s<seed>.csv).",
        ),
        guard_distance: float | None = typer.Option(
            None, "--guard-distance", help="Guard threshold, mean |HU| difference of 32^3 cubes (default: the "
            "smallest distance between training scans of two different patients).",
        ),
    ) -> None:
        """Generate volumes (int16 HU with spacing). Under torchrun each rank writes its share."""
        from ctsgan.generation import generate_volumes

        try:
            if guard_distance is not None and guard is None:
                raise ValueError("--guard-distance needs --guard DATASET")
            train_guard = None
            if guard is not None:
                from ctsgan.generation.guard import TrainingSetGuard

                train_guard = TrainingSetGuard.from_dataset(guard, min_distance_hu=guard_distance)
                typer.echo(f"guard: {len(train_guard.ids)} training scans of {guard}, threshold {train_guard.threshold_hu:.1f} HU")
            paths = generate_volumes(
                checkpoint, n, out, seed=seed, fmt=fmt, slices=slices, size=size, device=device, dtype=dtype,
                chunk=chunk, previews=previews, progress=True, overwrite=overwrite, resume=resume,
                batch=batch, writers=writers, calibrated=not raw_hu, guard=train_guard,
            )
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        note = " (the others were already there: --resume)" if resume else ""
        typer.echo(f"wrote {len(paths)} volumes to {out}{note} (previews in {out / 'previews'})")
        if train_guard is not None:
            from ctsgan.generation.guard import GuardLog, guard_log_path
            from ctsgan.training.distributed import launched_world

            rank, world, _ = launched_world()
            log = GuardLog(guard_log_path(out, seed, rank, world))
            decided = log.read()
            typer.echo(f"guard: {sum(decided.values())} of {len(decided)} drawn volumes passed; decisions in {log.path}")
