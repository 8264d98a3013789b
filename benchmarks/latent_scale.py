"""Does drawing CT-SGAN's latents wider at generation stop it copying its training patients?

With five training scans the real-chest generator puts about half its volumes nearer a training
patient than a new patient comes (docs/real_chest.md). StyleGAN / BigGAN scale the latent at
generation ("truncation": psi < 1 for fidelity, psi > 1 for variety). This renders the same seeds
with the patient code (``--mode patient``) or every latent (``--mode all``: patient code, R_v noise
and R_v initial state) multiplied by each psi and measures every set as
``experiments.real_chest.evaluate_holdout`` does: structure metrics against the training scans,
how many volumes are closer to a training scan than the held-out patient is, the copying test.
Generation only; nothing is trained.

    PYTHONPATH=src python benchmarks/latent_scale.py --run W/holdout_64/run --data W/holdout_64/data \
        --out OUT [--psi 0.75,1,1.25,1.5,2] [--mode patient|all] [--n-generate 32] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def latents_scaled(psi: float, mode: str) -> Iterator[None]:
    """While inside, every CT-SGAN generator builds its codes from latents multiplied by ``psi``
    (the patient code only, or with ``mode="all"`` also R_v's noise and initial state)."""
    from ctsgan.networks.ctsgan import CTSGANGenerator

    original = CTSGANGenerator.codes

    def codes(self: CTSGANGenerator, patient: torch.Tensor, eps: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        if mode == "all":
            return original(self, patient * psi, eps * psi, h0 * psi)
        return original(self, patient * psi, eps, h0)

    CTSGANGenerator.codes = codes  # type: ignore[method-assign]
    try:
        yield
    finally:
        CTSGANGenerator.codes = original  # type: ignore[method-assign]


def row(psi: float, mode: str, res: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one psi from an ``evaluate_holdout`` result."""
    s, m, c = res["structure"], res["memorization"], res["copying_test"]
    return {"psi": psi, "mode": mode, "z_profile": round(s["z_profile_error"], 3),
            "z_var": round(s["z_variation_ratio"], 3), "diversity": round(s["diversity_ratio"], 3),
            "closer": m["closer_than_heldout"], "min_mae": m["generated_min_mae_hu"], "held": m["heldout"]["mae_hu"],
            "copy_ratio": round(res["copies"]["copy_ratio"], 3), "auc_closer": c["auc_closer"], "p_closer": c["p_closer"]}


def main(argv: list[str] | None = None) -> None:
    from ctsgan.experiments.real_chest import evaluate_holdout

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run dir or checkpoint (trained by benchmarks/real_chest.py)")
    ap.add_argument("--data", required=True, help="its hold-out dataset (W/holdout_64/data)")
    ap.add_argument("--out", type=Path, required=True, help="work dir for the generated sets")
    ap.add_argument("--psi", default="0.75,1,1.25,1.5,2", help="latent scales, comma separated")
    ap.add_argument("--mode", choices=("patient", "all"), default="patient")
    ap.add_argument("--holdout", default="LIDC-IDRI-0006")
    ap.add_argument("--n-generate", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="generation seed (the same volumes' latents for every psi)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    for psi in [float(p) for p in args.psi.split(",")]:
        with latents_scaled(psi, args.mode):
            res = evaluate_holdout(args.run, args.data, args.out / f"psi{psi}_{args.mode}", args.holdout,
                                   n_generate=args.n_generate, seed=args.seed, raw=False)
        rows.append(row(psi, args.mode, res))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "n_generate": args.n_generate, "seed": args.seed,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
