"""Does a trained CT-SGAN use R_v along z? Its volumes with R_v's slice codes changed, side by side.

R_v (the BiLSTM) is meant to carry the slice-to-slice path of a volume. This measures how much of
a trained generator's change along z comes from it: the same seeds are rendered with R_v's codes
as they are, held at their mean over z (one code per volume), smoothed along z (5-slice box) and
with their part above that smoothing doubled; each set's structure metrics against the training
volumes and the codes' own spread (within a volume, between volumes, neighbour to neighbour).
If holding the codes constant leaves the z-variation ratio where it was, the volume's path along
z comes from elsewhere (the position features, the noise volume).

It also renders every 3-slice of 8 volumes and compares, in the networks' [-1, 1] units, the
mean neighbour difference of the assembled volume, the change *inside* each 3-slice (channel 1
vs 0 and 2) and the disagreement of neighbouring 3-slices about the slices they share
(``overlap_disagreement``) with the real volumes' neighbour difference.

    PYTHONPATH=src python benchmarks/rv_usage.py --run RUN --data DATASET [--generate 12] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

Edit = Callable[[torch.Tensor], torch.Tensor]


def constant(z: torch.Tensor) -> torch.Tensor:
    """(B, L, Z) codes -> each volume's mean code at every position."""
    return z.mean(1, keepdim=True).expand_as(z)


def smoothed(z: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Codes averaged over a k-slice window along z."""
    return F.avg_pool1d(z.transpose(1, 2), k, 1, k // 2, count_include_pad=False).transpose(1, 2)


def sharpened(z: torch.Tensor) -> torch.Tensor:
    """Codes with their part above :func:`smoothed` doubled."""
    return z + (z - smoothed(z))


@contextmanager
def rv_edited(edit: Edit | None, seen: list[torch.Tensor]) -> Iterator[None]:
    """While inside, every R_v forward returns ``edit(codes)`` and records the unedited codes."""
    from ctsgan.networks.ctsgan import SliceCodeRNN

    original = SliceCodeRNN.forward

    def forward(self: SliceCodeRNN, eps: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        z = original(self, eps, h0)
        seen.append(z.detach())
        return z if edit is None else edit(z)

    SliceCodeRNN.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        SliceCodeRNN.forward = original  # type: ignore[method-assign]


def three_slice_agreement(g: Any, real: list[Any], volumes: int = 8) -> dict[str, float]:
    """Neighbour differences of assembled volumes, inside 3-slices and between overlapping 3-slices,
    each also as a ratio to the real volumes' neighbour difference (networks' [-1, 1] units)."""
    import numpy as np

    from ctsgan.data.hu import hu_to_unit
    from ctsgan.training.recipes.ctsgan import _latents, overlap_disagreement

    cfg = g.config
    units = [hu_to_unit(v.astype(np.float32), *cfg.hu_window, cfg.hu_knots) for v in real]
    real_d1 = float(np.mean([np.abs(u[1:] - u[:-1]).mean() for u in units]))
    length = cfg.depth - 2
    with torch.no_grad():
        p, eps, h0, field = _latents(g.generator, volumes, length, torch.Generator().manual_seed(7), torch.device("cpu"))
        codes = g.generator.codes(p, eps, h0).reshape(volumes * length, -1)
        maps = None
        if field is not None:
            from ctsgan.networks.ctsgan import three_slice_noise

            vol = torch.arange(volumes).repeat_interleave(length)
            maps = three_slice_noise(field, vol, torch.arange(length).repeat(volumes))
        three = g.generator(codes, maps).reshape(volumes, length, 3, cfg.size, cfg.size)
    assembled = float((three[:, 1:, 1] - three[:, :-1, 1]).abs().mean())
    inside = float(((three[:, :, 1] - three[:, :, 0]).abs().mean() + (three[:, :, 2] - three[:, :, 1]).abs().mean()) / 2)
    overlap = float(overlap_disagreement(three))
    return {"real_neighbour_difference": real_d1, "assembled_neighbour_difference": assembled,
            "inside_3slice_difference": inside, "overlap_disagreement": overlap,
            "assembled_ratio": assembled / real_d1, "inside_ratio": inside / real_d1, "overlap_ratio": overlap / real_d1}


def main() -> None:
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.generation.generate import load_generator, volume_seed
    from ctsgan.metrics.structure import structure_metrics

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run dir or checkpoint")
    ap.add_argument("--data", required=True, help="the prepared dataset it trained on (train split = reference)")
    ap.add_argument("--generate", type=int, default=12)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ds = PreparedDataset(args.data, split="train")
    real = [ds.load(i, mmap=False) for i in range(len(ds.rows))]
    g = load_generator(args.run, "cpu", optimize=False)
    out: dict[str, Any] = {"run": str(args.run), "step": g.step}
    edits: dict[str, Edit | None] = {"as trained": None, "constant along z": constant, "smoothed (5)": smoothed,
                                     "high frequencies doubled": sharpened}
    for name, edit in edits.items():
        seen: list[torch.Tensor] = []
        with rv_edited(edit, seen):
            vols = [g.sample(volume_seed(1000, i)) for i in range(args.generate)]
        m = structure_metrics(real, vols)
        row: dict[str, Any] = {k: round(float(m[k]), 3) for k in ("z_profile_error", "z_variation_ratio", "diversity_ratio")}
        row["z_variation_ratio_per_d"] = {d: round(float(v), 3) for d, v in m["z_variation_ratio_per_d"].items()}
        out[name] = row
        print(f"{name:26s} z-profile {row['z_profile_error']:.2f} z-variation {row['z_variation_ratio']:.2f} "
              f"per d {row['z_variation_ratio_per_d']} diversity {row['diversity_ratio']:.2f}", flush=True)
        if edit is None:
            z = torch.cat(seen)  # (volumes, L, Z)
            out["codes"] = codes = {
                "within_volume_std": float(z.std(1).mean()),
                "between_volume_std": float(z.mean(1).std(0).mean()),
                "neighbour_difference": float((z[:, 1:] - z[:, :-1]).abs().mean()),
                "mean_abs": float(z.abs().mean()),
            }
            print("R_v codes: " + ", ".join(f"{k} {v:.3f}" for k, v in codes.items()), flush=True)
    out["3-slices"] = agree = three_slice_agreement(g, real)  # the network's own output: calibration plays no part
    print("3-slices (ratio to the real neighbour difference): " + ", ".join(
        f"{k.removesuffix('_ratio')} {v:.2f}" for k, v in agree.items() if k.endswith("_ratio")), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
