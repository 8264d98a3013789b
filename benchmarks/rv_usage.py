"""Does a trained CT-SGAN use R_v along z? Its volumes with R_v's slice codes changed, side by side.

R_v (the BiLSTM) is meant to carry the slice-to-slice path of a volume. This measures how much of
a trained generator's change along z comes from it: the same seeds are rendered with R_v's codes
as they are, held at their mean over z (one code per volume), smoothed along z (5-slice box) and
with their part above that smoothing doubled; each set's structure metrics against the training
volumes and the codes' own spread (within a volume, between volumes, neighbour to neighbour).
If holding the codes constant leaves the z-variation ratio where it was, the volume's path along
z comes from elsewhere (the position features, the noise volume).

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
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
