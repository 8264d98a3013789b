"""Nodule injector / eraser on chest phantoms: train briefly, then measure against ground truth.

Phantoms with nodules come with the same volume without nodules (``healthy``), so the eraser can
be scored exactly: L1 (HU) between its output and the healthy volume inside the nodule region,
versus the same L1 for the input. The injector is scored by the HU inside the nodules it paints
(peak and mean HU inside each nodule's sphere, mean HU in its core of half the radius)
and by checking that nothing outside the blend zone changed. A PNG shows a VOI before / after
inject / after erase.

    PYTHONPATH=src nice -n 10 python benchmarks/nodules_phantom.py --out /tmp/nodules_demo --steps 300

(CPU, one thread; prints a JSON summary, writes OUT/summary.json and OUT/voi_inject_erase.png.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ctsgan.config import resolve_config
from ctsgan.data.dataset import ManifestRow, Nodule, write_manifest, write_nodules
from ctsgan.data.phantom import make_phantom
from ctsgan.io.atomic import atomic_path, atomic_save_npy, atomic_write_text
from ctsgan.nodules.erase import erase_nodules
from ctsgan.nodules.inject import inject_nodules
from ctsgan.nodules.inpainter import InpaintConfig, load_inpainter
from ctsgan.nodules.lung_mask import lung_mask
from ctsgan.nodules.paste import blend_weight
from ctsgan.nodules.train import train_inpainter
from ctsgan.nodules.voi import ellipsoid_mask, extract_voi, voi_slices


def write_phantom_dataset(root: Path, n: int, size: int, seed: int) -> list:
    """Phantoms with nodules as a prepared dataset (the cube is the phantom itself); returns them."""
    rows, nods, phantoms = [], [], []
    for i in range(n):
        ph = make_phantom(size, (seed, i), nodules=True)
        vid = f"phantom-{seed}-{i:04d}"
        atomic_save_npy(root / "volumes" / f"{vid}.npy", ph.hu)
        sp = tuple(float(s) for s in ph.spacing_zyx)
        for c, d in ph.nodules:
            nods.append(Nodule(vid, *c, d / float(np.mean(sp)), d))
        rows.append(ManifestRow.as_is(vid, (size,) * 3, spacing=sp, source="phantom", n_nodules=len(ph.nodules)))  # type: ignore[arg-type]
        phantoms.append(ph)
    write_manifest(root / "manifest.csv", rows)
    write_nodules(root / "nodules.csv", nods)
    return phantoms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--train", type=int, default=16)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--config", default="cpu64")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: Path = args.out
    t0 = time.perf_counter()
    write_phantom_dataset(out / "train", args.train, args.size, seed=1)
    test = [make_phantom(args.size, (2, i), nodules=True) for i in range(args.test)]
    summary: dict[str, object] = {"phantom_size": args.size, "train_volumes": args.train, "test_volumes": args.test,
                                  "steps": args.steps, "config": args.config}

    runs = {}
    for model in ("eraser", "injector"):
        cfg = resolve_config(InpaintConfig, args.config, model)
        t = time.perf_counter()
        ck = train_inpainter(model, cfg, out / "train", out / f"run_{model}", steps=args.steps, resume=False,
                             device="cpu", progress=False)
        summary[f"{model}_train_s"] = round(time.perf_counter() - t, 1)
        runs[model] = load_inpainter(ck)
    eraser, injector = runs["eraser"], runs["injector"]

    # eraser: L1 (HU) to the healthy ground truth inside the nodule region, before and after
    l1_in, l1_out, n_nod = [], [], 0
    for ph in test:
        if not ph.nodules:
            continue
        erased = erase_nodules(ph.hu, ph.nodules, eraser, ph.spacing_zyx)
        region = ph.nodule_mask
        h = ph.healthy.astype(np.float64)
        l1_in.append(np.abs(ph.hu[region] - h[region]).mean())
        l1_out.append(np.abs(erased[region] - h[region]).mean())
        n_nod += len(ph.nodules)
    summary["eraser_nodules"] = n_nod
    summary["eraser_l1_hu_input"] = round(float(np.mean(l1_in)), 1)
    summary["eraser_l1_hu_output"] = round(float(np.mean(l1_out)), 1)
    summary["eraser_l1_ratio"] = round(float(np.mean(l1_out) / np.mean(l1_in)), 3)

    # injector: nodules of 10 mm into the healthy test volumes
    rng = np.random.default_rng(0)
    core_hu, ball_hu, inner_hu, lung_hu, unchanged = [], [], [], [], True
    demo = None
    for ph in test:
        lung = lung_mask(ph.healthy, ph.spacing_zyx)
        new, placed = inject_nodules(ph.healthy, lung, injector, ph.spacing_zyx, rng, 10.0, 2)
        changed = np.zeros(new.shape, dtype=bool)
        for c, d in placed:
            _, mask = injector.masks(d, ph.spacing_zyx)
            w = blend_weight(mask, injector.config.blend_vox)
            vol_sl, voi_sl = voi_slices(new.shape, c, injector.voi_size)
            changed[vol_sl] |= w[voi_sl] > 0
            ball = ellipsoid_mask(new.shape, [0.5 * d / s for s in ph.spacing_zyx], c)
            core_hu.append(float(new[ball].max()))
            ball_hu.append(float(new[ball].mean()))
            inner_hu.append(float(new[ellipsoid_mask(new.shape, [0.25 * d / s for s in ph.spacing_zyx], c)].mean()))
            lung_hu.append(float(ph.healthy[ball].mean()))
        unchanged &= bool(np.array_equal(new[~changed], ph.healthy[~changed]))
        if demo is None and placed:
            demo = (ph, new, placed[0])
    summary["injected_nodules"] = len(core_hu)
    summary["injected_peak_hu"] = [round(v) for v in core_hu]  # max HU inside each nodule sphere
    summary["injected_sphere_hu_mean"] = round(float(np.mean(ball_hu)), 1)
    summary["injected_core_hu_mean"] = round(float(np.mean(inner_hu)), 1)  # inner half of the radius
    summary["healthy_sphere_hu_mean"] = round(float(np.mean(lung_hu)), 1)
    summary["outside_blend_zone_unchanged"] = unchanged

    # picture: VOI (mid axial slice) healthy | after inject | after erase; and a phantom nodule erased
    if demo is not None:
        from PIL import Image

        from ctsgan.viz.preview import window_to_uint8

        ph, new, (c, d) = demo
        back = erase_nodules(new, [(c, d)], eraser, ph.spacing_zyx)
        s = injector.voi_size
        row1 = [extract_voi(v, c, s)[s // 2] for v in (ph.healthy, new, back)]
        # the largest nodule of the test phantoms
        ph2, (c2, d2) = max(((p, n) for p in test for n in p.nodules), key=lambda pn: pn[1][1])
        er2 = erase_nodules(ph2.hu, [(c2, d2)], eraser, ph2.spacing_zyx)
        row2 = [extract_voi(v, c2, s)[s // 2] for v in (ph2.hu, er2, ph2.healthy)]
        gap = np.full((s, 1), -1024, dtype=np.int16)
        rows = [np.concatenate([r[0], gap, r[1], gap, r[2]], axis=1) for r in (row1, row2)]
        img = window_to_uint8(np.concatenate([rows[0], np.full((1, rows[0].shape[1]), -1024), rows[1]], axis=0))
        img = np.kron(img, np.ones((6, 6), dtype=np.uint8))
        with atomic_path(out / "voi_inject_erase.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
        summary["picture"] = str(out / "voi_inject_erase.png")
        summary["picture_rows"] = ["healthy | injected 10 mm | injected then erased",
                                   f"phantom nodule {d2:.1f} mm | erased | healthy ground truth"]
    summary["total_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
