"""The quickstart job: phantoms -> prepare -> train CT-SGAN (cpu64) -> generate -> learning numbers -> FID table.

"Learning" is measured, not assumed: volumes from the trained generator and from an untrained
generator (same architecture, fresh weights) are compared with the real training volumes by the
1-D Wasserstein distance between body HU distributions and by tissue fractions (lung, soft
tissue, fat, bone) from :mod:`ctsgan.data.realism`, and by the 3D structure metrics of
:mod:`ctsgan.metrics.structure` (z-profile error, z-variation ratio, diversity ratio), which see
what the HU histograms cannot: one axial slice repeated along z, or one volume for every seed.
Held-out real volumes give the floor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctsgan.io.atomic import atomic_write_text


@dataclass
class RealismSummary:
    """Mean realism of a group of volumes against the pooled real training histogram."""

    n: int
    wasserstein_hu: float  # mean over volumes
    wasserstein_hu_std: float
    fractions: dict[str, float]  # mean tissue fractions
    fraction_error: float  # mean |fraction - real fraction| over the four tissues


def pooled_histogram(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of the body HU histograms of ``volumes`` (each (z, y, x) HU)."""
    from ctsgan.data.realism import body_histogram

    return np.sum([body_histogram(np.asarray(v)) for v in volumes], axis=0)


def summarise(volumes: Sequence[np.ndarray], reference_hist: np.ndarray, reference_fractions: dict[str, float]) -> RealismSummary:
    """Realism of ``volumes`` (each (z, y, x) HU) against a reference histogram and fractions.

    A volume without any body voxel (nothing above -500 HU) counts as maximally far: its
    distance is that of an all-air volume and its fractions are 0.
    """
    from ctsgan.data.realism import HU_FLOOR, body_histogram, hu_wasserstein, tissue_fractions

    dists, fracs = [], []
    for v in volumes:
        v = np.asarray(v)
        try:
            hist = body_histogram(v)
            fracs.append(tissue_fractions(v))
        except ValueError:  # empty body mask
            hist = np.zeros_like(reference_hist)
            hist[-1000 - HU_FLOOR] = 1
            fracs.append({k: 0.0 for k in reference_fractions})
        dists.append(hu_wasserstein(hist=hist, reference_hist=reference_hist))
    mean_frac = {k: float(np.mean([f[k] for f in fracs])) for k in reference_fractions}
    err = float(np.mean([abs(mean_frac[k] - reference_fractions[k]) for k in reference_fractions]))
    return RealismSummary(len(volumes), float(np.mean(dists)), float(np.std(dists)), mean_frac, err)


def reference_fractions(volumes: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean tissue fractions of real volumes."""
    from ctsgan.data.realism import tissue_fractions

    fr = [tissue_fractions(np.asarray(v)) for v in volumes]
    return {k: float(np.mean([f[k] for f in fr])) for k in fr[0]}


STRUCTURE_KEYS = (
    "z_profile_error",
    "z_profile_error_per_tissue",
    "z_profile_orientation",
    "z_variation_ratio",
    "z_variation_ratio_per_d",
    "diversity_ratio",
    "diversity_reason",
)


def structure_summary(reals: Sequence[np.ndarray], volumes: Sequence[np.ndarray]) -> dict[str, Any]:
    """3D structure of ``volumes`` against the real ``reals`` (each (z, y, x) HU, same depth).

    Returns:
        :data:`STRUCTURE_KEYS` of :func:`ctsgan.metrics.structure.structure_metrics`
        (z-profile error: 0 = real layout, 1 = flat; ratios: 1 = like real).
    """
    from ctsgan.metrics.structure import structure_metrics

    m = structure_metrics(reals, volumes)
    return {k: m[k] for k in STRUCTURE_KEYS}


def learning_report(
    checkpoint: Path, data_dir: Path, n: int = 4, seed: int = 1000, threads: int | None = None
) -> dict[str, Any]:
    """Trained vs untrained generator vs held-out real volumes, against the real training volumes.

    Args:
        checkpoint: trained checkpoint (or run dir).
        data_dir: the prepared dataset it was trained on (train split = reference; validation +
            test splits = held-out real volumes).
        n: generated volumes per generator.
        seed: generation seed (volumes ``volume_seed(seed, i)``).

    Returns:
        ``{"real_heldout": ..., "untrained": ..., "trained": ..., "reference_fractions": ...}``
        (summaries as dicts; each with ``structure``: :func:`structure_summary` against the
        training volumes); ``trained`` is what ``generate`` writes (with the checkpoint's HU
        calibration when it has one), and then ``trained_raw`` the same seeds without it.
    """
    import torch

    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.generation.generate import LoadedGenerator, load_generator, volume_seed

    train_set = PreparedDataset(data_dir, split="train")
    reals = [train_set.load(i, mmap=False) for i in range(len(train_set))]
    ref_hist = pooled_histogram(reals)
    ref_frac = reference_fractions(reals)
    held = PreparedDataset(data_dir)
    heldout = [held.load(i, mmap=False) for i, r in enumerate(held.rows) if r.split != "train"]

    trained = load_generator(checkpoint, device="cpu")
    torch.manual_seed(int(trained.config.seed) + 12345)
    fresh_gen = trained.recipe.build_networks(trained.config).generator.eval()
    untrained = LoadedGenerator(trained.recipe, trained.config, fresh_gen, trained.meta, 0, trained.checkpoint, trained.device)

    def volumes(g: LoadedGenerator, raw: bool = False) -> list[np.ndarray]:
        return [g.sample(volume_seed(seed, i), raw=raw) for i in range(n)]

    report: dict[str, Any] = {"reference_fractions": ref_frac, "n_train_volumes": len(reals)}
    groups = {"real_heldout": heldout} if heldout else {}
    groups |= {"untrained": volumes(untrained), "trained": volumes(trained)}
    if trained.calibration is not None:
        groups["trained_raw"] = volumes(trained, raw=True)
    for key, vols in groups.items():
        report[key] = asdict(summarise(vols, ref_hist, ref_frac))
        report[key]["structure"] = structure_summary(reals, vols)
    return report


@dataclass
class QuickstartResult:
    """Where the quickstart put things, how long each stage took, and the learning numbers."""

    out_dir: Path
    phantoms: Path
    dataset: Path
    run: Path
    checkpoint: Path
    generated: list[Path]
    previews: Path
    seconds: dict[str, float] = field(default_factory=dict)
    learning: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    evaluation_dir: Path | None = None


def run_quickstart(
    out_dir: str | Path,
    *,
    n_phantoms: int = 12,
    phantom_size: int = 96,
    size: int = 64,
    train_seconds: float = 300.0,
    max_steps: int = 5000,
    n_generate: int = 4,
    seed: int = 0,
    threads: int | None = None,
    evaluate: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> QuickstartResult:
    """Run the whole default job on built-in phantom data.

    Args:
        out_dir: everything goes under it: ``phantoms/``, ``dataset/``, ``run/``, ``generated/``,
            ``learning.json``.
        n_phantoms: phantoms to make (``phantom_size``^3, then prepared to ``size``^3).
        size: training cube edge (the ``cpu64`` preset is used; its ``size`` is set to this).
        train_seconds: wall-clock budget for training (a checkpoint is written when it runs out),
            or ``max_steps`` steps, whichever comes first.
        n_generate: volumes generated at the end (with previews).
        seed: seeds phantoms, split, training and generation.
        threads: intra-op threads for training (None: time 1 and all cores, keep the faster).
        evaluate: end with ``ctsgan evaluate`` (paper FID, 2.5D FID, memorization, figures) of the
            generated volumes against the prepared phantoms, written to ``out_dir/eval``.
    """
    import torch

    from ctsgan.data.phantom import write_phantoms
    from ctsgan.data.prepare import prepare_dataset
    from ctsgan.generation.generate import generate_volumes
    from ctsgan.training import train
    from ctsgan.training.checkpoint import load_checkpoint
    from ctsgan.training.recipes import get_recipe

    out = Path(out_dir)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    phantoms = out / "phantoms"
    n_stages = 6 if evaluate else 5
    say(f"[1/{n_stages}] {n_phantoms} chest phantoms of {phantom_size}^3 -> {phantoms}")
    write_phantoms(phantoms, n_phantoms, phantom_size, seed)
    seconds["phantoms"] = time.perf_counter() - t

    t = time.perf_counter()
    dataset = out / "dataset"
    say(f"[2/{n_stages}] prepare to {size}^3 cubes -> {dataset}")
    report = prepare_dataset([phantoms], dataset, size=size, seed=seed, progress=progress)
    if report.skipped:
        say(f"      skipped {len(report.skipped)} input(s): {report.skipped[:3]}")
    seconds["prepare"] = time.perf_counter() - t

    recipe = get_recipe("ctsgan")
    cfg = recipe.load_config("cpu64")
    cfg.size = size  # type: ignore[attr-defined]
    cfg.seed = seed
    run = out / "run"
    t = time.perf_counter()
    say(f"[3/{n_stages}] train CT-SGAN (cpu64) for about {train_seconds / 60:.0f} min -> {run}")
    if threads is None:
        threads, step_s = pick_threads(cfg, dataset, out / ".probe")
        say(f"      about {step_s:.2f} s/step with {threads} thread(s) here")
    cfg.steps = max_steps
    say(f"      training stops after {train_seconds / 60:.1f} min or {max_steps} steps")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ckpt = train("ctsgan", cfg, dataset, run, progress=progress, time_limit_s=train_seconds)
    finally:
        torch.set_num_threads(before)
    say(f"      trained {load_checkpoint(ckpt)['step']} steps")
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    generated_dir = out / "generated"
    say(f"[4/{n_stages}] generate {n_generate} volumes -> {generated_dir}")
    generated = generate_volumes(ckpt, n_generate, generated_dir, seed=seed, fmt="nifti", device="cpu")
    seconds["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[5/{n_stages}] learning check: trained vs untrained generator vs held-out real volumes")
    learning = learning_report(ckpt, dataset, n=max(4, n_generate), seed=seed + 1000)
    atomic_write_text(out / "learning.json", json.dumps(learning, indent=2))
    for key, label in (("real_heldout", "real held-out"), ("trained", "trained G"), ("trained_raw", "trained G, raw HU")):
        if key in learning:
            say(f"      {label}: {format_structure(learning[key]['structure'])}")
    from ctsgan.metrics.structure import structure_warnings

    for warning in structure_warnings(learning["trained"]["structure"], learning.get("real_heldout", {}).get("structure")):
        say(f"      WARNING trained G: {warning}")
    seconds["learning"] = time.perf_counter() - t
    result = QuickstartResult(out, phantoms, dataset, run, ckpt, generated, generated_dir / "previews", seconds, learning)
    if evaluate:
        from ctsgan.metrics.evaluate import evaluate as run_evaluation

        t = time.perf_counter()
        result.evaluation_dir = out / "eval"
        say(f"[6/6] evaluate (paper FID slice by slice, 2.5D FID, memorization, figures) -> {result.evaluation_dir}")
        result.evaluation = run_evaluation(
            dataset, {"CT-SGAN": generated_dir}, result.evaluation_dir, figures=True, plane_stride=4,
            progress=progress,
        )
        seconds["evaluate"] = time.perf_counter() - t
    return result


def _measure_step_seconds(cfg: Any, dataset: Path, probe_dir: Path, threads: int) -> float:
    """Seconds per training step with ``threads`` intra-op threads (a throw-away 4-step run, first step warm-up)."""
    import shutil

    import torch

    from ctsgan.training import train

    probe = cfg.model_copy(deep=True)
    probe.checkpoint_every, probe.preview_every, probe.tensorboard, probe.log_every = 1000, 0, False, 1000
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        shutil.rmtree(probe_dir, ignore_errors=True)
        train("ctsgan", probe, dataset, probe_dir, steps=1, progress=False)
        t1 = time.perf_counter()
        train("ctsgan", None, dataset, probe_dir, steps=4, resume=True, progress=False)
        return (time.perf_counter() - t1) / 3
    finally:
        torch.set_num_threads(before)
        shutil.rmtree(probe_dir, ignore_errors=True)


def pick_threads(cfg: Any, dataset: Path, probe_dir: Path) -> tuple[int, float]:
    """(threads, seconds per step): one thread or all cores, whichever trains faster here.

    On a busy machine, several spinning OpenMP threads per process can be many times slower
    than one, so the choice is measured rather than assumed.
    """
    import torch

    options = sorted({1, torch.get_num_threads()})
    timed = [(_measure_step_seconds(cfg, dataset, probe_dir, n), n) for n in options]
    best_s, best_n = min(timed)
    return best_n, best_s


def format_structure(st: dict[str, Any]) -> str:
    """One line: z-profile error, z-variation ratio, diversity ratio (n/a where None)."""

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    return (f"z-profile error {num(st['z_profile_error'])} (real ~0, flat 1), z-variation ratio "
            f"{num(st['z_variation_ratio'])}, diversity ratio {num(st['diversity_ratio'])} (real ~1)")


def format_learning(learning: dict[str, Any]) -> str:
    """A small table of the learning numbers."""
    lines = [f"{'volumes':<14}{'W1 to real (HU)':>18}{'lung':>8}{'soft':>8}{'fat':>8}{'bone':>8}{'|frac err|':>12}"]
    ref = learning["reference_fractions"]
    lines.append(f"{'real (train)':<14}{0.0:>18.1f}" + "".join(f"{ref[k]:>8.3f}" for k in ("lung", "soft", "fat", "bone")) + f"{0.0:>12.3f}")
    labels = (("real_heldout", "real held-out"), ("untrained", "untrained G"), ("trained", "trained G"),
              ("trained_raw", "trained, raw"))
    for key, label in labels:
        if key not in learning:
            continue
        s = learning[key]
        f = s["fractions"]
        lines.append(
            f"{label:<14}{s['wasserstein_hu']:>12.1f} +- {s['wasserstein_hu_std']:<4.0f}"
            + "".join(f"{f[k]:>8.3f}" for k in ("lung", "soft", "fat", "bone"))
            + f"{s['fraction_error']:>12.3f}"
        )
    rows = [(label, learning[key]["structure"]) for key, label in labels if "structure" in learning.get(key, {})]
    if rows:
        lines += ["", "3D structure vs real (train): z-profile error 0 = real head-to-feet layout, 1 = flat;",
                  "ratios 1 = like real (z-variation ~0: one slice repeated; diversity ~0: same volume every seed)",
                  f"{'volumes':<14}{'z-profile err':>15}{'z-var ratio':>13}{'diversity ratio':>17}"]

        def cell(v: float | None, width: int) -> str:
            return f"{'n/a':>{width}}" if v is None else f"{v:>{width}.2f}"

        for label, st in rows:
            lines.append(f"{label:<14}" + cell(st["z_profile_error"], 15) + cell(st["z_variation_ratio"], 13)
                         + cell(st["diversity_ratio"], 17))
    return "\n".join(lines)
