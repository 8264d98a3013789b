"""CT-SGAN (cpu64 preset) trained for a time budget on one GPU: the structure metrics along the way.

What more steps buy: the CPU fidelity benchmark reaches a few thousand steps in 30 minutes; a GPU
reaches far more in minutes. Trains the preset (default ``cpu64``) on a prepared 64^3 dataset for
``--seconds``, checkpointing every ``--every`` steps, then for each checkpoint generates
``--generate`` volumes and computes :func:`ctsgan.metrics.structure.structure_metrics` against the
training volumes; writes ``curve.json`` and a tri-planar PNG of the last checkpoint's volumes.

    python benchmarks/fidelity_gpu.py --data DATASET --out OUT --seconds 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="cpu64")
    ap.add_argument("--seconds", type=float, default=200.0)
    ap.add_argument("--every", type=int, default=2000)
    ap.add_argument("--generate", type=int, default=12)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import numpy as np
    import torch

    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.generation.generate import load_generator, volume_seed
    from ctsgan.metrics.structure import structure_metrics
    from ctsgan.training import train
    from ctsgan.training.checkpoint import list_checkpoints
    from ctsgan.training.recipes import get_recipe

    cfg = get_recipe("ctsgan").load_config(args.preset)
    cfg.steps, cfg.checkpoint_every, cfg.keep_last = 10_000_000, args.every, 1000
    cfg.preview_every, cfg.tensorboard, cfg.log_every, cfg.device = 0, False, 500, args.device
    t = time.perf_counter()
    train("ctsgan", cfg, args.data, args.out / "run", progress=False, time_limit_s=args.seconds)
    wall = time.perf_counter() - t
    ds = PreparedDataset(args.data, split="train")
    real = [ds.load(i, mmap=False) for i in range(len(ds))]
    curve = []
    fake: list[np.ndarray] = []
    for step, path in list_checkpoints(args.out / "run"):
        g = load_generator(path, device=args.device)
        fake = [g.sample(volume_seed(123, i)) for i in range(args.generate)]
        m = structure_metrics(real, fake)
        row = {"step": step, **{k: m.get(k) for k in ("z_profile_error", "z_profile_layout_error", "z_profile_orientation",
                                                       "z_variation_ratio", "diversity_ratio")},
               "z_profile_error_per_tissue": m.get("z_profile_error_per_tissue")}
        curve.append(row)
        print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    summary = {"preset": args.preset, "device": device, "train_seconds": round(wall, 1),
               "steps": curve[-1]["step"] if curve else 0, "curve": curve}
    (args.out / "curve.json").write_text(json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vols = real[:2] + fake[:4]
    fig, ax = plt.subplots(3, len(vols), figsize=(2 * len(vols), 6))
    for j, v in enumerate(vols):
        c = v.shape[0] // 2
        for i, img in enumerate((v[c], v[:, c], v[:, :, c])):
            ax[i, j].imshow(img, cmap="gray", vmin=-1024, vmax=600)
            ax[i, j].axis("off")
        ax[0, j].set_title("real" if j < 2 else f"generated {j - 2}")
    fig.suptitle(f"{args.preset}, {summary['steps']} steps on {device}")
    fig.savefig(args.out / "triplanar.png", dpi=70)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}))


if __name__ == "__main__":
    main()
