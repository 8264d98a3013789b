"""`ctsgan bench generate`: generation speed, memory and efficiency of a paper-scale generator."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the ``bench`` app."""

    @app.command("generate")
    def bench_generate_cmd(
        size: int = typer.Option(224, "--size", help="Volume edge S."),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
        dtype: str = typer.Option("fp32", "--dtype", help="fp32 (strict) | tf32 (CUDA) | bf16 (autocast)"),
        model: str = typer.Option("ctsgan", "--model", help="Registered model (ctsgan, gan3d, ...)."),
        repeats: int = typer.Option(3, "--repeats", help="Timed volumes (median reported)."),
        chunk: int | None = typer.Option(None, "--chunk", help="2D slices per generator call."),
        naive: bool = typer.Option(False, "--naive", help="Time the unoptimised path (one slice per call, no folding)."),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the 2D generator."),
        n: int | None = typer.Option(None, "-n", "--n", help="Also measure throughput over N volumes (generator only, end to end)."),
        fmt: str = typer.Option("npy", "--format", help="nifti | npy | dicom (end-to-end run)."),
        batch: int | None = typer.Option(None, "--batch", help="Volumes per generator call (default: the model's)."),
        writers: int | None = typer.Option(None, "--writers", help="Writer processes (default: as ctsgan generate)."),
        previews: bool = typer.Option(True, "--previews/--no-previews", help="Write previews in the end-to-end run."),
        serial: bool = typer.Option(False, "--serial-baseline", help="Also time one volume at a time with in-process writes."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Seconds per volume, peak memory, counted GFLOP, achieved GFLOP/s vs a matmul in the same run."""
        from ctsgan.bench.generate import bench_generate, format_table

        try:
            result = bench_generate(size=size, device=device, dtype=dtype, model=model, repeats=repeats, chunk=chunk,
                                    naive=naive, compile=compile_, n=n, fmt=fmt, batch=batch, writers=writers,
                                    previews=previews, serial_baseline=serial)
        except (ValueError, NotImplementedError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(result) if as_json else format_table(result))
