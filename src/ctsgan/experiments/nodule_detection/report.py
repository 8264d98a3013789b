"""Results of the grid: the CSV, the markdown summary and the accuracy-vs-size plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ctsgan.experiments.nodule_detection.config import Regime
from ctsgan.io.atomic import atomic_path, atomic_write_text


@dataclass(frozen=True)
class CellKey:
    regime: Regime
    diameter_mm: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.regime.value}_d{self.diameter_mm:g}_s{self.seed}"


@dataclass
class CellResult:
    """One finished (regime, size, seed) cell."""

    regime: str
    diameter_mm: float
    seed: int
    accuracy: float
    auc: float
    test_loss: float
    val_accuracy: float
    best_step: int
    steps: int
    n_train: int
    n_val: int
    n_test: int
    seconds: float


RESULT_COLUMNS = list(CellResult.__dataclass_fields__)


@dataclass
class ExperimentReport:
    """What one call of :func:`run_experiment` did."""

    ran: list[CellKey]
    skipped: list[CellKey]
    results: list[CellResult]
    out_dir: Path


def read_cell_results(out_dir: Path) -> list[CellResult]:
    """All finished cells under ``out_dir/cells`` (sorted by regime, size, seed)."""
    results = []
    for p in sorted((Path(out_dir) / "cells").glob("*.json")):
        try:
            results.append(CellResult(**json.loads(p.read_text())))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{p}: not a cell result ({e})") from e
    order = {r.value: i for i, r in enumerate(Regime)}
    return sorted(results, key=lambda r: (order.get(r.regime, 99), r.diameter_mm, r.seed))


def write_results_csv(path: Path, results: Sequence[CellResult]) -> None:
    """One row per cell (columns: RESULT_COLUMNS), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items()})
    atomic_write_text(path, buf.getvalue())


def _mean_std(values: Sequence[float]) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3f} (n=1)"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f} (n={len(vals)})"


def summary_table(results: Sequence[CellResult], metric: str = "accuracy") -> str:
    """Markdown table: one row per regime, one column per nodule diameter (mm), mean ± std over seeds.

    The std is the sample standard deviation (ddof=1) over seeds.
    """
    sizes = sorted({r.diameter_mm for r in results})
    regimes = [g.value for g in Regime if any(r.regime == g.value for r in results)]
    head = f"| {metric} \\ diameter (mm) | " + " | ".join(f"{s:g}" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for g in regimes:
        cells = [
            _mean_std([getattr(r, metric) for r in results if r.regime == g and r.diameter_mm == s])
            for s in sizes
        ]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_size(path: Path, results: Sequence[CellResult]) -> Path:
    """Figure 3(b)-like plot: test accuracy (mean ± std over seeds) vs nodule diameter, per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    sizes = sorted({r.diameter_mm for r in results})
    n_reg = len(Regime)
    bar_w = 0.8 / n_reg
    for k, g in enumerate(Regime):
        means, stds, xs, per_seed = [], [], [], []
        for j, s in enumerate(sizes):
            vals = [r.accuracy for r in results if r.regime == g.value and r.diameter_mm == s]
            if vals:
                xs.append(j + (k - (n_reg - 1) / 2) * bar_w)
                means.append(float(np.mean(vals)))
                stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
                per_seed.append(vals)
        if xs:
            ax.bar(xs, means, width=bar_w, yerr=stds, capsize=3, label=g.value)
            for x, vals in zip(xs, per_seed, strict=True):
                ax.plot([x] * len(vals), vals, "k.", ms=4)  # one dot per seed
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(sizes)), [f"{s:g}" for s in sizes])
    ax.set_xlabel("injected nodule diameter (mm)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("dots: single seeds; bars: mean ± std", fontsize=8)
    ax.legend(fontsize=8, loc="upper center", ncol=4, bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(out_dir: Path) -> list[CellResult]:
    """Rewrite results.csv, summary.md and the plot from the finished cells."""
    results = read_cell_results(out_dir)
    write_results_csv(out_dir / "results.csv", results)
    text = (
        "# Nodule detection: test accuracy (mean ± std over seeds)\n\n"
        + summary_table(results, "accuracy")
        + "\n# ROC AUC\n\n"
        + summary_table(results, "auc")
    )
    atomic_write_text(out_dir / "summary.md", text)
    if results:
        plot_accuracy_vs_size(out_dir / "accuracy_vs_size.png", results)
    return results


