"""Real chests (issue #11): prepare, nodule-free set, radial nodule profiles, CT-SGAN hook.

One command runs parts 1-3 on the six real scans of ``../shared/data/chest`` and writes the
numbers as JSON + markdown (default ``docs/results/real_chest/``):

1. **prepare** every scan at each ``--sizes`` (per scan wall / CPU seconds, nothing skipped),
   the TCGA whole-body scan's cube lung profile (chest, not abdomen) and, for every annotated
   nodule, the cube HU at its centre and the lung fraction of a ring around it;
2. **erase** every nodule of ``nodules.csv`` at ``--erase-size`` (``erase_dataset``, classical
   eraser unless ``--eraser CKPT``): mean HU in each erased region vs the surrounding lung
   parenchyma, and a before / after figure in three planes per nodule (``--figure``);
3. **radial profiles** of the real nodules (mean HU at r / R) by size group, against nodules of
   the same diameters injected into the nodule-free cubes by the classical injector and, with
   ``--injector-steps N > 0``, by an injector trained for N steps on the real nodules
   (``ctsgan nodules train``, preset ``cpu64``, the train split's nodules; once per seed of
   ``--injector-seeds``), and with
   ``--phantom-injector-steps N`` by the same injector trained on chest phantoms only;
4. **CT-SGAN hook** (off unless ``--config`` is given): train CT-SGAN on five scans at 64^3 with
   one LIDC scan held out, for ``--train-seconds``, generate ``--n-generate`` volumes, and report
   ``structure_metrics`` (generated vs the five training scans) and memorization (each generated
   volume's distance to its nearest training scan beside the held-out scan's own); with
   ``--trajectory`` the same for every checkpoint the run kept, and with ``--skip train`` for a
   run already in ``OUT/holdout_SIZE/run`` (nothing retrained).

    PYTHONPATH=src python benchmarks/real_chest.py --out /tmp/real_chest \
        [--data ../shared/data/chest] [--sizes 64,128,224] [--erase-size 128] [--injector-steps 600] \
        [--injector-seeds 0,1,2] [--phantom-injector-steps 600] [--figure docs/img/real_chest_erased.png] [--results docs/results/real_chest] \
        [--config cpu64|FILE.yaml --train-seconds 600 [--trajectory] [--skip ...,train]]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "chest"


def stage_prepare(data: Path, out: Path, sizes: list[int]) -> dict[str, Any]:
    """Prepare ``data`` at each size, timing each scan; returns {size: {...}}."""
    from ctsgan.data.discover import discover
    from ctsgan.data.prepare import job_fingerprint, prepare_dataset, prepare_series
    from ctsgan.experiments.real_chest import nodule_placement, z_lung_profile_check

    res: dict[str, Any] = {}
    for size in sizes:
        ds = out / f"prepared_{size}"
        for sub in ("volumes", "previews", "records"):
            (ds / sub).mkdir(parents=True, exist_ok=True)
        disc = discover([data])
        times: dict[str, dict[str, float]] = {}
        for job in disc.jobs:
            t0, c0 = time.perf_counter(), time.process_time()
            r = prepare_series(job, ds, size, job_fingerprint(job, size))
            times[job.id] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                             "skipped": r.skipped[1] if r.skipped else None}  # type: ignore[dict-item]
            print(f"prepare {size}: {job.id} {times[job.id]['wall_s']:.2f} s wall", flush=True)
        rep = prepare_dataset([data], ds, size, progress=False)  # reuses every record; writes the CSVs
        entry: dict[str, Any] = {
            "dataset": str(ds), "prepared": len(rep.prepared), "skipped": [list(s) for s in rep.skipped],
            "nodules": len(rep.nodules), "per_scan": times,
        }
        entry["tcga"] = z_lung_profile_check(ds, "TCGA-DE-A4MA") if (ds / "volumes/TCGA-DE-A4MA.npy").exists() else None
        entry["nodule_placement"] = nodule_placement(ds)
        res[str(size)] = entry
    return res


def stage_erase(prepared: Path, out: Path, eraser: Path | None, figure: Path | None) -> dict[str, Any]:
    """Erase every nodule of ``prepared`` into ``out`` (classical unless ``eraser``); HU per nodule."""
    from ctsgan.data.dataset import read_nodules
    from ctsgan.experiments.real_chest import figure_erased
    from ctsgan.nodules.apply import erase_dataset
    from ctsgan.nodules.inpainter import load_inpainter

    t0 = time.perf_counter()
    model = load_inpainter(eraser) if eraser is not None else None
    rep = erase_dataset(prepared, out, model, progress=False, method=str(eraser) if eraser else "classical")
    rows = [{**r.__dict__, "diff_hu": round(r.diff_hu, 1), "erased_ok": r.erased_ok} for r in rep.erased]
    res: dict[str, Any] = {
        "dataset": str(out), "method": rep.method, "seconds": round(time.perf_counter() - t0, 1),
        "nodules": rows, "ok": sum(r["erased_ok"] for r in rows), "n": len(rows),
        "max_abs_diff_hu": max((abs(r["diff_hu"]) for r in rows), default=None),
    }
    if figure is not None:
        res["figure"] = str(figure_erased(prepared, out, read_nodules(prepared / "nodules.csv"), figure))
    return res


def _trained_injector(
    data_dir: Path, run: Path, steps: int, seed: int, clean: Path, diameters: Sequence[float], per_diameter: int,
    cube: Sequence[dict[str, Any]], native: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Train the cpu64 injector on ``data_dir`` for ``steps`` and compare its injected nodules with the real ones."""
    import shutil

    from ctsgan.config import resolve_config
    from ctsgan.experiments.real_chest import compare_profiles, injected_profiles
    from ctsgan.nodules.inpainter import InpaintConfig, load_inpainter
    from ctsgan.nodules.train import train_inpainter

    t0 = time.perf_counter()
    cfg = resolve_config(InpaintConfig, "cpu64", "injector").model_copy(update={"seed": seed})
    if run.exists():
        shutil.rmtree(run)
    ckpt = train_inpainter("injector", cfg, data_dir, run, steps=steps, progress=False)
    train_s = time.perf_counter() - t0
    inj = injected_profiles(clean, diameters, per_diameter, seed, injector=load_inpainter(ckpt))
    return {"checkpoint": str(ckpt), "steps": steps, "seed": seed, "train_seconds": round(train_s, 1),
            "vs_cube": compare_profiles(cube, inj), "vs_native": compare_profiles(native, inj)}


def stage_radial(
    data: Path, prepared: Path, clean: Path, out: Path, per_diameter: int, injector_steps: int, seed: int,
    radius_scales: Sequence[float] = (0.8, 0.6), phantom_injector_steps: int = 0,
    injector_seeds: Sequence[int] = (),
) -> dict[str, Any]:
    """Real nodule radial profiles (native and cube) vs injected ones (classical, trained injector).

    The injector trained on the real nodules is trained once per seed of ``injector_seeds``
    (default: ``seed`` alone); ``trained`` is the first, ``trained_seeds`` all of them.
    """
    from ctsgan.experiments.real_chest import (
        compare_profiles,
        cube_nodule_profiles,
        injected_profiles,
        native_nodule_profiles,
    )

    native = native_nodule_profiles(data)
    cube = cube_nodule_profiles(prepared)
    diameters = [p["diameter_mm"] for p in cube]
    res: dict[str, Any] = {
        "real_native": native, "real_cube": cube,
        "cube_vs_native": compare_profiles(native, cube),
    }
    t0 = time.perf_counter()
    classical = injected_profiles(clean, diameters, per_diameter, seed)
    res["classical"] = {"vs_cube": compare_profiles(cube, classical), "vs_native": compare_profiles(native, classical),
                        "seconds": round(time.perf_counter() - t0, 1)}
    # the classical ball with a smaller radius: LIDC's diameter is the largest in-plane extent
    for scale in radius_scales:
        prof = injected_profiles(clean, diameters, per_diameter, seed, radius_scale=scale)
        res[f"classical_r{scale:g}"] = {"radius_scale": scale, "vs_cube": compare_profiles(cube, prof),
                                        "vs_native": compare_profiles(native, prof)}
    if injector_steps > 0:
        seeds = list(injector_seeds) or [seed]
        res["trained_seeds"] = [
            _trained_injector(prepared, out / ("injector_run" if s == seeds[0] else f"injector_run_s{s}"), injector_steps,
                              s, clean, diameters, per_diameter, cube, native)
            for s in seeds]
        res["trained"] = res["trained_seeds"][0]
    if phantom_injector_steps > 0:  # the same injector trained on phantom nodules only: do real VOIs help?
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from nodules_phantom import write_phantom_dataset

        ph = out / "phantoms_128"
        if not (ph / "manifest.csv").exists():
            write_phantom_dataset(ph, 16, 128, seed)
        res["trained_phantom"] = _trained_injector(ph, out / "injector_phantom_run", phantom_injector_steps, seed, clean,
                                                   diameters, per_diameter, cube, native)
        res["trained_phantom"]["data"] = "16 chest phantoms at 128^3"
    return res


def _g(v: Any) -> str:
    """A metric for a table: 3 significant digits, or '-' for None."""
    return "-" if v is None else f"{float(v):.3g}"


def markdown(summary: dict[str, Any]) -> str:
    """The summary as a few markdown tables."""
    lines = ["# Real chests (issue #11): measured", ""]
    prep = summary.get("prepare", {})
    if prep:
        sizes = list(prep)
        ids = sorted(next(iter(prep.values()))["per_scan"])
        lines += ["## prepare, seconds per scan (wall / CPU)", "",
                  "| scan | " + " | ".join(f"S = {s}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for i in ids:
            cells = [f"{prep[s]['per_scan'][i]['wall_s']:.2f} / {prep[s]['per_scan'][i]['cpu_s']:.2f}" for s in sizes]
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
        lines += ["", "skipped: " + ", ".join(f"S = {s}: {len(prep[s]['skipped'])}" for s in sizes), ""]
        for s in sizes:
            t = prep[s].get("tcga")
            if t:
                lines.append(f"TCGA-DE-A4MA at {s}: chest_like {t['chest_like']}, lung fraction top 5 % {t['top_5pct']}, "
                             f"middle {t['middle']}, bottom 10 % {t['bottom_10pct']}; crop z {t['crop_start_z']}.."
                             f"{t['crop_start_z'] + t['crop_slices']} of {t['orig_slices']} slices")
        lines.append("")
    er = summary.get("erase")
    if er:
        lines += [f"## erase ({er['method']}): {er['ok']} of {er['n']} within 100 HU of the lung around", "",
                  "| nodule | d (mm) | HU before | HU after | lung around | after - lung |", "|---|---|---|---|---|---|"]
        for r in er["nodules"]:
            lines.append(f"| {r['volume_id']} ({r['z']:.0f}, {r['y']:.0f}, {r['x']:.0f}) | {r['diameter_mm']:.1f} | "
                         f"{r['hu_before']:.0f} | {r['hu_after']:.0f} | {r['hu_parenchyma']:.0f} | {r['diff_hu']:+.0f} |")
        lines.append("")
    rad = summary.get("radial")
    if rad:
        lines += ["## radial HU profile, mean absolute difference (HU, r/R 0-1.5) from the real nodules", "",
                  "| injector | reference | " + " | ".join(rad["classical"]["vs_cube"]["mad_hu"]) + " | mean |",
                  "|---|---|" + "---|" * (len(rad["classical"]["vs_cube"]["mad_hu"]) + 1)]
        rows = [("real, cube", "native", rad["cube_vs_native"])]
        for name in ("classical", *[k for k in rad if k.startswith("classical_r")]):
            rows += [(name, "cube", rad[name]["vs_cube"]), (name, "native", rad[name]["vs_native"])]
        for t in rad.get("trained_seeds", [rad["trained"]] if "trained" in rad else []):
            name = f"trained, seed {t.get('seed', '-')}, {t['steps']} steps"
            rows += [(name, "cube", t["vs_cube"]), (name, "native", t["vs_native"])]
        if "trained_phantom" in rad:
            rows += [("trained on phantoms", "cube", rad["trained_phantom"]["vs_cube"]),
                     ("trained on phantoms", "native", rad["trained_phantom"]["vs_native"])]
        for name, ref, cmp in rows:
            lines.append(f"| {name} | {ref} | " + " | ".join(f"{v:.0f}" for v in cmp["mad_hu"].values())
                         + f" | {cmp['mad_hu_mean']:.0f} |")
        lines.append("")
    ho = summary.get("holdout")
    if ho:
        st, sh, mem = ho["structure"], ho["structure_heldout"], ho["memorization"]
        lines += [f"## CT-SGAN, {ho['holdout']} held out ({ho['config']}, {ho['steps']} steps, {ho.get('train_seconds', '-')} s)", "",
                  "| | z-profile error | z-variation ratio | nearest training scan MAE (HU) | SSIM |", "|---|---|---|---|---|",
                  f"| held-out real scan | {_g(sh['z_profile_error'])} | {_g(sh['z_variation_ratio'])} | "
                  f"{mem['heldout']['mae_hu']} | {mem['heldout']['ssim']} |",
                  f"| generated (n = {ho['n_generated']}) | {_g(st['z_profile_error'])} | {_g(st['z_variation_ratio'])} | "
                  f"min {mem['generated_min_mae_hu']} | max {mem['generated_max_ssim']} |", "",
                  f"diversity ratio {_g(st['diversity_ratio'])}; generated closer to a training scan than the held-out "
                  f"scan is: {mem['closer_than_heldout']} of {ho['n_generated']}", ""]
        if ho.get("nearest_mix"):
            lines += [mix_line(ho["nearest_mix"]), ""]
        if ho.get("z_profile_floor"):
            lines += [floor_line(ho["z_profile_floor"], ho["n_generated"]), ""]
        if ho.get("z_profile_bootstrap"):
            lines += [bootstrap_line(ho["z_profile_bootstrap"], ho["n_generated"]), ""]
        ct = ho.get("copying_test")
        if ct:
            lines += [f"copying test (generated nearest distances against every real scan's leave-one-out distance, "
                      f"{ct['new_patient_mae_hu']}): P(generated closer than a new patient) {ct['auc_closer']}, "
                      f"one-sided p {ct['p_closer']} (0.5: as close as new patients; 1: copying)", ""]
        al = ho.get("aligned_copies")
        if al:
            lines += [f"aligned (training scans stretched 0.75-1.25 per axis and turned -10..10 degrees in-plane): "
                      f"held-out scan {al['heldout_hu']} HU; generated {al['generated_hu']}; closer than the held-out "
                      f"scan: {al['closer_than_heldout']} of {ho['n_generated']}", ""]
        gd = ho.get("guarded")
        if gd:
            lines += guarded_lines(gd)
        if ho.get("copies"):
            lines += [f"copy ratio (training data only: nearest generated-to-training over nearest training-to-training "
                      f"distance) {_g(ho['copies'].get('copy_ratio'))}; the held-out scan's "
                      f"{_g(ho['copies_heldout'].get('copy_ratio'))}", ""]
        traj = ho.get("trajectory")
        if traj:
            has_al = "aligned_closer_than_heldout" in traj[0]
            has_gd = "guarded" in traj[0]
            lines += ["### every kept checkpoint (calibrated where the run calibrates)", "",
                      "| step | z-profile error | layout error | z-variation ratio | diversity ratio | copy ratio | "
                      "nearest training scan MAE (HU) | max SSIM | closer than the held-out scan | "
                      "P(closer than a new patient) / p |"
                      + (" aligned: nearest (HU) / held-out's | aligned: closer |" if has_al else "")
                      + (" guarded: kept / drawn | guarded: z-profile / diversity | guarded: closer / P |" if has_gd else ""),
                      "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if has_al else "") + ("---|---|---|" if has_gd else "")]
            for r in traj:
                lines.append(f"| {r['step']} | {_g(r['z_profile_error'])} | {_g(r['z_profile_layout_error'])} | "
                             f"{_g(r['z_variation_ratio'])} | {_g(r['diversity_ratio'])} | {_g(r['copy_ratio'])} | "
                             f"min {r['min_mae_hu']} | {r['max_ssim']} | {r['closer_than_heldout']} of {r['n_generated']} | "
                             f"{_g(r.get('copy_auc'))} / {_g(r.get('copy_p'))} |"
                             + (f" {r['aligned_min_hu']} / {r['aligned_heldout_hu']} | {r['aligned_closer_than_heldout']} of "
                                f"{r['n_generated']} |" if has_al else "")
                             + (_guarded_cells(r["guarded"]) if has_gd else ""))
            lines.append("")
    return "\n".join(lines)


def guarded_lines(gd: dict[str, Any]) -> list[str]:
    """The summary's paragraph on the guarded set (:func:`ctsgan.experiments.real_chest.guarded_report`)."""
    head = (f"guarded (`generate --guard`, threshold {gd['threshold_hu']} HU: the closest two training patients): "
            f"{gd['kept']} of {gd['candidates']} drawn volumes passed")
    if "structure" not in gd:
        return [f"{head}; {gd.get('error', 'none written')}", ""]
    st, mem, ct = gd["structure"], gd["memorization"], gd["copying_test"]
    return [f"{head}; z-profile error {_g(st['z_profile_error'])}, z-variation ratio {_g(st['z_variation_ratio'])}, "
            f"diversity ratio {_g(st['diversity_ratio'])}; nearest training scan min {mem['generated_min_mae_hu']} HU; "
            f"closer than the held-out scan: {mem['closer_than_heldout']} of {len(mem['generated'])}; "
            f"P(closer than a new patient) {ct['auc_closer']} (p {ct['p_closer']})", ""] + (
                [f"guarded {mix_line(gd['nearest_mix'])}", ""] if gd.get("nearest_mix") else []) + (
                [f"guarded {floor_line(gd['z_profile_floor'], gd['kept'])}", ""] if gd.get("z_profile_floor") else []) + (
                [f"guarded {bootstrap_line(gd['z_profile_bootstrap'], gd['kept'])}", ""]
                if gd.get("z_profile_bootstrap") else [])


def mix_line(mix: dict[str, Any]) -> str:
    """The summary's line on a set's nearest-patient mix (:func:`ctsgan.experiments.real_chest.nearest_mix_structure`)."""
    counts = ", ".join(f"{t} {c}" for t, c in mix["counts"].items())
    return (f"nearest-patient mix ({counts}): the training scans themselves in this mix score z-profile error "
            f"{_g(mix['z_profile_error'])} (layout {_g(mix['z_profile_layout_error'])}), the part of the set's error "
            "that is its mix of patients")


def floor_line(floor: dict[str, float], n: int) -> str:
    """The summary's line on the z-profile error's sampling floor (:func:`ctsgan.metrics.structure.z_profile_sampling_floor`)."""
    return (f"z-profile sampling floor (a perfect generator's set of {n}: training scans drawn with replacement): "
            f"mean {_g(floor['mean'])}, 90 % under {_g(floor['upper'])}")


def bootstrap_line(boot: dict[str, float], n: int) -> str:
    """The summary's line on the z-profile error's bootstrap interval (:func:`ctsgan.metrics.structure.z_profile_bootstrap`)."""
    return (f"z-profile error {_g(boot['error'])}, 90 % bootstrap interval {_g(boot['low'])} to {_g(boot['high'])} "
            f"(sd {_g(boot['sd'])}: another {n} volumes from this generator, the training scans fixed)")


def _guarded_cells(g: dict[str, Any]) -> str:
    return (f" {g['kept']} / {g['candidates']} | {_g(g['z_profile_error'])} / {_g(g['diversity_ratio'])} | "
            f"{g['closer_than_heldout']} of {g['n']} / {_g(g['copy_auc'])} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work dir (datasets, runs)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", default="64,128,224", help="prepare sizes, comma separated")
    ap.add_argument("--erase-size", type=int, default=128, help="size for parts 2 and 3 (one of --sizes)")
    ap.add_argument("--eraser", type=Path, default=None, help="eraser checkpoint (default: classical)")
    ap.add_argument("--figure", type=Path, default=None, help="before / after erase PNG")
    ap.add_argument("--per-diameter", type=int, default=4, help="injected nodules per real diameter")
    ap.add_argument("--injector-steps", type=int, default=0, help="train an injector on the real nodules (0: skip)")
    ap.add_argument("--injector-seeds", default="",
                    help="comma separated seeds: train the real-nodule injector once per seed (default: --seed)")
    ap.add_argument("--phantom-injector-steps", type=int, default=0,
                    help="also train an injector on 16 chest phantoms only (0: skip): do real nodule VOIs help?")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma separated parts to skip: prepare,erase,radial,train "
                    "(train: measure the CT-SGAN run already in OUT/holdout_SIZE/run)")
    ap.add_argument("--aligned", action="store_true",
                    help="also compare with in-plane stretched / turned training scans (about 25 s per checkpoint at 64^3)")
    ap.add_argument("--guard", action="store_true",
                    help="part 4: also measure n volumes that passed `generate --guard` (the privacy guard) against the training scans")
    ap.add_argument("--trajectory", action="store_true",
                    help="part 4: also measure every checkpoint the run kept (set checkpoint_every / keep_last in the config)")
    ap.add_argument("--results", type=Path, default=None, help="dir for summary.json + summary.md")
    # ---- part 4 hook: CT-SGAN on five scans, one LIDC scan held out (off unless --config) ----
    ap.add_argument("--config", default=None, help="CT-SGAN preset or YAML (its size sets the cube size); runs part 4")
    ap.add_argument("--train-seconds", type=float, default=600.0)
    ap.add_argument("--train-steps", type=int, default=None, help="cap on steps (default: the config's)")
    ap.add_argument("--holdout", default="LIDC-IDRI-0006")
    ap.add_argument("--n-generate", type=int, default=8)
    ap.add_argument("--holdout-figure", type=Path, default=None,
                    help="part 4: PNG of the held-out scan and the nearest / farthest generated volume beside its nearest training scan")
    args = ap.parse_args(argv)
    if not (args.data / "annotations.csv").exists():
        ap.error(f"{args.data}: no annotations.csv; not the real chest folder")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    summary: dict[str, Any] = {"data": str(args.data)}
    if "prepare" not in skip:
        summary["prepare"] = stage_prepare(args.data, args.out, sizes)
    prepared = args.out / f"prepared_{args.erase_size}"
    clean = args.out / f"clean_{args.erase_size}"
    if "erase" not in skip or "radial" not in skip:
        if not (prepared / "manifest.csv").exists():
            stage_prepare(args.data, args.out, [args.erase_size])
        if "erase" not in skip or not (clean / "manifest.csv").exists():
            if clean.exists():
                import shutil

                shutil.rmtree(clean)
            summary["erase"] = stage_erase(prepared, clean, args.eraser, args.figure)
            print(f"erase: {summary['erase']['ok']} of {summary['erase']['n']} within 100 HU", flush=True)
    if "radial" not in skip:
        summary["radial"] = stage_radial(args.data, prepared, clean, args.out, args.per_diameter, args.injector_steps,
                                         args.seed, phantom_injector_steps=args.phantom_injector_steps,
                                         injector_seeds=[int(v) for v in args.injector_seeds.split(",") if v.strip()])
    if args.config is not None:
        summary["holdout"] = stage_holdout(args, args.out, skip)
    text = json.dumps(summary, indent=1, default=str)
    md = markdown(summary)
    print(md)
    if args.results:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "summary.json").write_text(text)
        (args.results / "summary.md").write_text(md)
    return 0


def stage_holdout(args: argparse.Namespace, out: Path, skip: set[str]) -> dict[str, Any]:
    """Part 4 hook: prepare + erase at the config's size, then :func:`holdout_ctsgan` (``train`` in
    ``skip``: :func:`evaluate_holdout` on the run already there), and with ``--trajectory``
    :func:`checkpoint_trajectory` over every checkpoint the run kept."""
    import shutil

    from ctsgan.experiments.real_chest import checkpoint_trajectory, evaluate_holdout, holdout_ctsgan
    from ctsgan.training.checkpoint import latest_checkpoint, load_checkpoint
    from ctsgan.training.recipes import get_recipe

    size = int(get_recipe("ctsgan").load_config(args.config).size)  # type: ignore[attr-defined]
    prepared, clean = out / f"prepared_{size}", out / f"clean_{size}"
    if not (prepared / "manifest.csv").exists():
        stage_prepare(args.data, out, [size])
    if not (clean / "manifest.csv").exists():
        if clean.exists():
            shutil.rmtree(clean)
        stage_erase(prepared, clean, args.eraser, None)
    work = out / f"holdout_{size}"
    if "train" in skip:  # measure the run already in work/run
        ckpt = latest_checkpoint(work / "run")
        if ckpt is None:
            raise SystemExit(f"--skip train: {work / 'run'} holds no checkpoint")
        res = {"config": str(args.config), "size": size, "steps": int(load_checkpoint(ckpt)["step"]),
               **evaluate_holdout(ckpt, work / "data", work, args.holdout, args.n_generate, args.seed, aligned=args.aligned,
                                  guard=args.guard)}
    else:
        if work.exists():
            shutil.rmtree(work)
        res = holdout_ctsgan(clean, work, args.config, args.train_seconds, holdout=args.holdout,
                             n_generate=args.n_generate, seed=args.seed, steps=args.train_steps, aligned=args.aligned,
                             guard=args.guard)
    if args.holdout_figure:
        from ctsgan.experiments.real_chest import figure_holdout

        res["figure"] = str(figure_holdout(work / "data", work / "generated", res["memorization"], args.holdout_figure))
        if "memorization" in res.get("guarded", {}):
            fig = args.holdout_figure.with_name(f"{args.holdout_figure.stem}_guarded{args.holdout_figure.suffix}")
            res["guarded"]["figure"] = str(figure_holdout(work / "data", work / "generated_guarded",
                                                          res["guarded"]["memorization"], fig))
    if args.trajectory:
        res["trajectory"] = checkpoint_trajectory(work / "run", work / "data", work / "trajectory", args.holdout,
                                                  args.n_generate, args.seed, aligned=args.aligned, guard=args.guard)
    return res


if __name__ == "__main__":
    sys.exit(main())
