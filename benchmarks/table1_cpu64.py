"""Table 1 analogue on phantoms at cpu64: real/real, 3D GAN, CT-SGAN (and an untrained CT-SGAN).

The whole pipeline, reproducible from its arguments (sizes, step caps, time budgets, seeds):

1. ``--phantoms`` chest phantoms of ``--size``^3 (``write_phantoms``, seed ``--seed``);
2. prepared twice with the same split seed: at ``--size`` (CT-SGAN, evaluation) and at
   ``--gan3d-size`` (the 3D GAN's training cube; the paper trained it at 128 and upsampled to 224);
3. CT-SGAN preset ``cpu64`` and the 3D GAN preset ``cpu32`` trained at the same time in two
   one-thread processes, each for at most ``--ctsgan-steps`` / ``--gan3d-steps`` steps or
   ``--ctsgan-seconds`` / ``--gan3d-seconds`` of training, whichever comes first (the steps
   actually reached are written to ``summary.json``);
4. ``--generate`` volumes from each (the 3D GAN upsampled to ``--size``^3 with ``size=``), plus
   the same number from a freshly initialised CT-SGAN generator (the untrained reference);
5. ``ctsgan.metrics.evaluate.evaluate`` with real = the dataset's test split, the real/real row =
   validation split vs test split, training set = train split (memorization), figures on;
6. ``metrics.json``, ``table.md``, ``summary.json`` and the figure PNGs copied to ``--results``.

Run (from the repo root)::

    nice -n 10 env PYTHONPATH=src python benchmarks/table1_cpu64.py --work /tmp/table1 \
        --results docs/results/table1_cpu64
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def train_one(
    model: str, preset: str, dataset: str, run: str, seed: int, steps: int, seconds: float, resume: bool = False
) -> dict[str, Any]:
    """Train ``model`` (one intra-op thread; ``resume``: continue the run dir) and return the step reached and the wall time."""
    import torch

    from ctsgan.training import train
    from ctsgan.training.checkpoint import load_checkpoint
    from ctsgan.training.recipes import get_recipe

    torch.set_num_threads(1)
    cfg = get_recipe(model).load_config(preset)
    cfg.seed = seed
    cfg.steps = steps
    t = time.perf_counter()
    if resume:
        ckpt = train(model, None, dataset, run, steps=steps, resume=True, progress=False, time_limit_s=seconds)
    else:
        ckpt = train(model, cfg, dataset, run, progress=False, time_limit_s=seconds)
    return {
        "model": model,
        "preset": preset,
        "checkpoint": str(ckpt),
        "steps_reached": int(load_checkpoint(ckpt)["step"]),
        "step_cap": steps,
        "time_limit_s": seconds,
        "wall_s": round(time.perf_counter() - t, 1),
    }


def write_untrained(checkpoint: Path, out_dir: Path, n: int, seed: int) -> list[Path]:
    """``n`` volumes from a freshly initialised generator of the checkpoint's architecture (npy, int16 HU)."""
    import torch

    from ctsgan.generation.generate import LoadedGenerator, load_generator, volume_name, volume_seed
    from ctsgan.io.volumes import write_volume

    trained = load_generator(checkpoint, device="cpu")
    torch.manual_seed(int(trained.config.seed))
    fresh = trained.recipe.build_networks(trained.config).generator.eval()
    untrained = LoadedGenerator(trained.recipe, trained.config, fresh, trained.meta, 0, trained.checkpoint, trained.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        vol = untrained.sample(volume_seed(seed, i))
        paths.append(write_volume(out_dir, volume_name(seed, i), vol, untrained.spacing(vol.shape), fmt="npy"))
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="scratch folder (phantoms, datasets, runs, eval)")
    p.add_argument("--results", type=Path, required=True, help="where the small result files are copied")
    p.add_argument("--phantoms", type=int, default=24)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--gan3d-size", type=int, default=32)
    p.add_argument("--ctsgan-steps", type=int, default=5000)
    p.add_argument("--ctsgan-seconds", type=float, default=420.0)
    p.add_argument("--gan3d-steps", type=int, default=5000)
    p.add_argument("--gan3d-seconds", type=float, default=420.0)
    p.add_argument("--generate", type=int, default=4, help="volumes per generator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plane-stride", type=int, default=4)
    p.add_argument("--eval-threads", type=int, default=2)
    p.add_argument("--resume", action="store_true",
                   help="reuse --work (phantoms, datasets) and continue both training runs for the given budgets; "
                        "the evaluation's feature cache serves the real volumes")
    args = p.parse_args()

    import torch

    from ctsgan.data.phantom import write_phantoms
    from ctsgan.data.prepare import prepare_dataset
    from ctsgan.generation.generate import generate_volumes
    from ctsgan.metrics.evaluate import evaluate

    work = args.work
    data = work / f"data{args.size}"
    data3d = work / f"data{args.gan3d_size}"
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    if not args.resume:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        t = time.perf_counter()
        phantoms = work / "phantoms"
        write_phantoms(phantoms, args.phantoms, args.size, args.seed, workers=2)
        timing["phantoms"] = time.perf_counter() - t
        print(f"phantoms: {args.phantoms} x {args.size}^3 in {timing['phantoms']:.0f} s", flush=True)

        t = time.perf_counter()
        prepare_dataset([phantoms], data, size=args.size, seed=args.seed, progress=False)
        prepare_dataset([phantoms], data3d, size=args.gan3d_size, seed=args.seed, progress=False)
        timing["prepare"] = time.perf_counter() - t
        print(f"prepare: {timing['prepare']:.0f} s", flush=True)

    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        f_ct = pool.submit(train_one, "ctsgan", "cpu64", str(data), str(work / "run-ctsgan"), args.seed,
                           args.ctsgan_steps, args.ctsgan_seconds, args.resume)
        f_3d = pool.submit(train_one, "gan3d", "cpu32", str(data3d), str(work / "run-gan3d"), args.seed,
                           args.gan3d_steps, args.gan3d_seconds, args.resume)
        runs = {"CT-SGAN": f_ct.result(), "3D GAN": f_3d.result()}
    timing["train"] = time.perf_counter() - t
    for name, r in runs.items():
        print(f"train {name}: {r['steps_reached']} steps in {r['wall_s']} s", flush=True)

    t = time.perf_counter()
    torch.set_num_threads(1)
    steps_ct, steps_3d = runs["CT-SGAN"]["steps_reached"], runs["3D GAN"]["steps_reached"]
    gen = work / f"generated-{steps_ct}-{steps_3d}"
    gen_seed = args.seed + 1000
    generate_volumes(runs["CT-SGAN"]["checkpoint"], args.generate, gen / "ctsgan", seed=gen_seed, device="cpu")
    generate_volumes(runs["3D GAN"]["checkpoint"], args.generate, gen / "gan3d", seed=gen_seed, size=args.size, device="cpu")
    # the untrained generator does not depend on the training run: its volumes are byte-identical
    # between runs, so the evaluation cache serves them after the first run
    write_untrained(Path(runs["CT-SGAN"]["checkpoint"]), gen / "ctsgan-untrained", args.generate, gen_seed)
    timing["generate"] = time.perf_counter() - t
    print(f"generate: {timing['generate']:.0f} s", flush=True)

    t = time.perf_counter()
    torch.set_num_threads(args.eval_threads)
    fakes = {
        f"3D GAN ({args.gan3d_size}^3 -> {args.size}^3, {steps_3d} steps)": gen / "gan3d",
        f"CT-SGAN ({steps_ct} steps)": gen / "ctsgan",
        "CT-SGAN untrained (0 steps)": gen / "ctsgan-untrained",
    }
    ev = work / f"eval-{steps_ct}-{steps_3d}"
    for old in sorted(work.glob("eval*/cache")):  # earlier runs' Inception features (content-hashed keys)
        if old.parent != ev:
            shutil.copytree(old, ev / "cache", dirs_exist_ok=True)
    result = evaluate(f"{data}:test", fakes, ev, figures=True, plane_stride=args.plane_stride,
                      real_ref=f"{data}:validation", train=f"{data}:train", progress=False)
    timing["evaluate"] = time.perf_counter() - t
    timing["total"] = time.perf_counter() - t0
    print(f"evaluate: {timing['evaluate']:.0f} s; total {timing['total']:.0f} s", flush=True)

    summary = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
        "timing_s": {k: round(v, 1) for k, v in timing.items()},
        "torch": torch.__version__,
        "flagged_near_copies": {n: (f.get("memorization") or {}).get("n_flagged") for n, f in result["fakes"].items()},
    }
    res = args.results
    res.mkdir(parents=True, exist_ok=True)
    (res / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name in ("metrics.json", "table.md"):
        shutil.copy2(ev / name, res / name)
    for png in sorted((ev / "figures").glob("*.png")):
        shutil.copy2(png, res / png.name)
    for name, sub in (("ctsgan", "run-ctsgan"), ("gan3d", "run-gan3d")):
        previews = sorted((work / sub / "previews").glob("*.png"))
        if previews:
            shutil.copy2(previews[-1], res / f"train_preview_{name}.png")
    print((ev / "table.md").read_text())


if __name__ == "__main__":
    main()
