"""`ctsgan bench memory`: peak memory and time of one training step, CT-SGAN vs the 3D GAN."""

from __future__ import annotations

import json
import sys

import typer


def bench_memory(
    size: int = typer.Option(224, "--size", help="Cube edge S: CT-SGAN at S (and 2S slices), the 3D GAN at S."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    widths: str = typer.Option(
        "32,32,512",
        "--widths",
        help="Widths for BOTH models: 'N' (G and D base), 'G,D' or 'G,D,MAX' (max channels, default 512).",
    ),
    reference_size: int = typer.Option(128, "--reference-size", help="The 3D GAN's own size in the paper."),
    memory_limit: str = typer.Option(
        "auto",
        "--memory-limit",
        help="Per-configuration limit, e.g. 8G; 'auto' = half the available RAM on CPU, none on CUDA; 'none'.",
    ),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timed steps per configuration (median) after a warm-up step."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds allowed per configuration."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads per subprocess (default: torch's)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Volumes per step (the paper comparison: 1)."),
) -> None:
    """One training step (D + G update, batch 1 by default) of CT-SGAN and of the 3D GAN, each in a fresh
    subprocess: peak memory, step seconds and their ratios. Configurations that do not fit are
    reported as such."""
    from ctsgan.bench.memory import (
        BenchDevice,
        Widths,
        default_memory_limit,
        format_table,
        parse_bytes,
        run_memory_benchmark,
    )

    try:
        dev = BenchDevice(device)
    except ValueError:
        raise typer.BadParameter(f"must be one of {[d.value for d in BenchDevice]}, got {device!r}", param_hint="--device") from None
    try:
        w = Widths.parse(widths)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--widths") from None
    try:
        limit = default_memory_limit(dev) if memory_limit.strip().lower() == "auto" else parse_bytes(memory_limit)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--memory-limit") from None

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run_memory_benchmark(
        size, str(dev), w, reference_size, limit, repeats=repeats, timeout_s=timeout, threads=threads,
        progress=progress, batch_size=batch_size,
    )
    print(json.dumps(report, indent=2) if json_out else format_table(report))


def register(app: typer.Typer) -> None:
    """Add ``bench memory`` to the ``bench`` app."""
    app.command("memory")(bench_memory)
