"""Results of the grid: the CSV, the markdown summary and the accuracy-vs-size plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctsgan.experiments.nodule_detection.config import Origin, Regime
from ctsgan.experiments.nodule_detection.stats import Estimate, accuracy_estimate, paired_difference
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
    test_correct: list[int] = field(default_factory=list)  # 1/0 per real test scan, in test-set order
    test_origins: list[str] = field(default_factory=list)  # Origin of each test scan, same order
    test_nodule_mm: list[float] = field(default_factory=list)  # its largest nodule's diameter (0: none)
    visible_mm: float = 0.0  # smallest diameter spanning min_nodule_voxels classifier-input voxels


#: the per-scan lists stay in the cell files, out of results.csv
PER_SCAN_FIELDS = ("test_correct", "test_origins", "test_nodule_mm")
RESULT_COLUMNS = [f for f in CellResult.__dataclass_fields__ if f not in PER_SCAN_FIELDS]


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
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items() if k in RESULT_COLUMNS})
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


def regime_outcomes(results: Sequence[CellResult], regime: Regime, diameter_mm: float,
                     seeds: Sequence[int] | None = None, origins: Collection[str] | None = None) -> dict[int, list[int]]:
    """seed -> per-test-scan outcomes of ``regime`` at ``diameter_mm`` (cells that stored them);
    ``origins``: only the test scans of those kinds (cells without stored origins are left out)."""
    out = {}
    for r in results:
        if r.regime != regime.value or r.diameter_mm != diameter_mm or not r.test_correct:
            continue
        if seeds is not None and r.seed not in seeds:
            continue
        if origins is None:
            out[r.seed] = r.test_correct
        elif len(r.test_origins) == len(r.test_correct):
            out[r.seed] = [ok for ok, o in zip(r.test_correct, r.test_origins, strict=True) if o in origins]
    return out


#: test scans no injector or eraser touched: a difference on them cannot come from learning the
#: injector's or eraser's own signature (which the synthetic set shares with the real edited scans)
UNTOUCHED = (Origin.KEPT.value, Origin.CLEAN.value)


#: the comparisons the report makes: (A, B, what A - B means); the last one is the positive control
COMPARISONS: tuple[tuple[Regime, Regime, str], ...] = (
    (Regime.PRETRAIN_FINETUNE, Regime.REAL, "synthetic pre-training + real fine-tuning - real only"),
    (Regime.SYNTHETIC, Regime.REAL, "synthetic only - real only"),
    (Regime.REAL_ALL, Regime.REAL, "positive control: all real training scans - the few"),
)


def comparison(results: Sequence[CellResult], a: Regime, b: Regime, diameter_mm: float,
               origins: Collection[str] | None = None) -> Estimate | None:
    """accuracy(a) - accuracy(b) at one size, paired over the seeds both have and their test scans
    (``origins``: only test scans of those kinds)."""
    oa, ob = regime_outcomes(results, a, diameter_mm, origins=origins), regime_outcomes(results, b, diameter_mm, origins=origins)
    seeds = sorted(set(oa) & set(ob))
    if not seeds or any(len(oa[s]) != len(ob[s]) or not oa[s] for s in seeds):
        return None
    return paired_difference([oa[s] for s in seeds], [ob[s] for s in seeds])


def interval_table(results: Sequence[CellResult]) -> str:
    """Markdown table of test accuracy with its 95 % interval (:func:`accuracy_estimate`) per regime and size."""
    sizes = sorted({r.diameter_mm for r in results})
    regimes = [g for g in Regime if any(r.regime == g.value for r in results)]
    lines = ["| accuracy [95 % interval] \\ diameter (mm) | " + " | ".join(f"{s:g}" for s in sizes) + " |",
             "|---" * (len(sizes) + 1) + "|"]
    for g in regimes:
        cells = []
        for s in sizes:
            out = regime_outcomes(results, g, s)
            cells.append(f"{accuracy_estimate(list(out.values())).text()} (seeds {len(out)})" if out else "n/a")
        lines.append(f"| {g.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def difference_table(results: Sequence[CellResult], origins: Collection[str] | None = None) -> str:
    """Markdown table of the paired differences of :data:`COMPARISONS` with 95 % intervals
    (``origins``: on the test scans of those kinds only)."""
    sizes = sorted({r.diameter_mm for r in results})
    lines = ["| difference [95 % interval] \\ diameter (mm) | " + " | ".join(f"{s:g}" for s in sizes) + " |",
             "|---" * (len(sizes) + 1) + "|"]
    for a, b, what in COMPARISONS:
        cells = [comparison(results, a, b, s, origins) for s in sizes]
        if all(c is None for c in cells):
            continue
        lines.append(f"| {what} | " + " | ".join(c.text() if c is not None else "n/a" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _origin_group(origin: str, nodule_mm: float, visible_mm: float) -> str:
    """kept nodules split at the visibility limit; the other origins as they are."""
    if origin != Origin.KEPT.value or visible_mm <= 0:
        return origin
    return f"kept >= {visible_mm:.0f} mm" if nodule_mm >= visible_mm else f"kept < {visible_mm:.0f} mm"


def origin_table(results: Sequence[CellResult]) -> str:
    """Markdown table: test accuracy per kind of test scan (kept real nodules, split at the size the
    classifier can see; injected; erased; clean), per regime and size, pooled over seeds.

    It shows where a regime's errors are: e.g. kept nodules below the visibility limit cap every
    regime's accuracy, whatever its training."""
    have = [r for r in results if r.test_origins and len(r.test_origins) == len(r.test_correct)]
    if not have:
        return "(no per-scan origins stored in these cells)\n"
    groups: dict[tuple[str, float], dict[str, list[int]]] = {}
    names: list[str] = []
    for r in have:
        sizes = r.test_nodule_mm or [0.0] * len(r.test_origins)
        acc = groups.setdefault((r.regime, r.diameter_mm), {})
        for ok, origin, mm in zip(r.test_correct, r.test_origins, sizes, strict=True):
            g = _origin_group(origin, mm, r.visible_mm)
            acc.setdefault(g, []).append(ok)
            if g not in names:
                names.append(g)
    names.sort(key=lambda g: ("kept >=" not in g, not g.startswith("kept"), g))
    lines = ["| regime, diameter (mm) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    order = {g.value: i for i, g in enumerate(Regime)}
    for (regime, size), acc in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        cells = [f"{np.mean(acc[g]):.2f} ({len(acc[g])})" if g in acc else "n/a" for g in names]
        lines.append(f"| {regime}, {size:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict(results: Sequence[CellResult]) -> str:
    """Whether this run can resolve a difference between regimes, from its positive control.

    Resolved at a size when the control's interval lies above 0 there; otherwise the report says
    the run cannot resolve the effect, and that its tables are not a result.
    """
    sizes = sorted({r.diameter_mm for r in results})
    control = {s: comparison(results, Regime.REAL_ALL, Regime.REAL, s) for s in sizes}
    if all(c is None for c in control.values()):
        return ("NO POSITIVE CONTROL: this run did not train real-all (set real_train_limit), so nothing shows it "
                "could resolve a difference; the tables below are not a result.")
    resolved = [s for s, c in control.items() if c is not None and c.lo > 0]
    shown = "; ".join(f"{s:g} mm: {c.text()}" for s, c in control.items() if c is not None)
    if not resolved:
        return (f"NOT RESOLVED: the positive control (more real training scans must help) is not significant "
                f"({shown}); this run cannot resolve a difference between regimes, and the tables below are not a result.")
    return (f"Positive control resolved at {', '.join(f'{s:g}' for s in resolved)} mm ({shown}): differences "
            f"between regimes can be read at those sizes, with their intervals.")


def plot_accuracy_vs_size(path: Path, results: Sequence[CellResult]) -> Path:
    """Figure 3(b)-like plot: test accuracy vs nodule diameter per regime; bars are the mean over
    seeds, whiskers the 95 % interval (:func:`accuracy_estimate`; ± std for cells without per-scan
    outcomes), dots single seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    sizes = sorted({r.diameter_mm for r in results})
    n_reg = len(Regime)
    bar_w = 0.8 / n_reg
    for k, g in enumerate(Regime):
        means, lows, highs, xs, per_seed = [], [], [], [], []
        for j, s in enumerate(sizes):
            vals = [r.accuracy for r in results if r.regime == g.value and r.diameter_mm == s]
            if vals:
                xs.append(j + (k - (n_reg - 1) / 2) * bar_w)
                mean = float(np.mean(vals))
                outcomes = regime_outcomes(results, g, s)
                if outcomes:
                    est = accuracy_estimate(list(outcomes.values()))
                    err = (mean - est.lo, est.hi - mean)
                else:
                    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                    err = (sd, sd)
                means.append(mean)
                lows.append(max(0.0, err[0]))
                highs.append(max(0.0, err[1]))
                per_seed.append(vals)
        if xs:
            ax.bar(xs, means, width=bar_w, yerr=[lows, highs], capsize=3, label=g.value)
            for x, vals in zip(xs, per_seed, strict=True):
                ax.plot([x] * len(vals), vals, "k.", ms=4)  # one dot per seed
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(sizes)), [f"{s:g}" for s in sizes])
    ax.set_xlabel("injected nodule diameter (mm)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("bars: mean over seeds; whiskers: 95 % interval; dots: single seeds", fontsize=8)
    ax.legend(fontsize=8, loc="upper center", ncol=4, bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(out_dir: Path) -> list[CellResult]:
    """Rewrite results.csv, summary.md (the verdict first) and the plot from the finished cells."""
    results = read_cell_results(out_dir)
    write_results_csv(out_dir / "results.csv", results)
    text = (
        f"# Nodule detection\n\n**{verdict(results)}**\n\n"
        "## Test accuracy with 95 % intervals (bootstrap over test scans; Wilson for one seed)\n\n"
        + interval_table(results)
        + "\n## Paired differences between regimes (same test scans)\n\n"
        + difference_table(results)
        + "\n## The same differences on the untouched test scans (kept nodules and clean scans)\n\n"
        "No injector or eraser touched these scans, so a gain here cannot come from the injector's or eraser's own "
        "signature, which the synthetic set shares with the real injected and erased scans.\n\n"
        + difference_table(results, UNTOUCHED)
        + "\n## Test accuracy by kind of test scan (accuracy (scans), pooled over seeds)\n\n"
        + origin_table(results)
        + "\n## Test accuracy (mean ± std over seeds)\n\n"
        + summary_table(results, "accuracy")
        + "\n## ROC AUC\n\n"
        + summary_table(results, "auc")
    )
    atomic_write_text(out_dir / "summary.md", text)
    if results:
        plot_accuracy_vs_size(out_dir / "accuracy_vs_size.png", results)
    return results


