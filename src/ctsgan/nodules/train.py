"""Training loop of the nodule injector / eraser (a small conditional-GAN loop of its own).

Data (from a prepared dataset, :class:`ctsgan.data.dataset.PreparedDataset`):

- **injector**: VOIs centred on the nodules of ``nodules.csv`` (random flips); the generator sees
  the VOI with the mask sphere blanked and must paint it back. With probability
  ``inject_move_prob`` the real nodule is first moved into a healthy VOI at a random lung point
  (more contexts than a dataset's few nodules give).
- **eraser**: healthy VOIs at random lung points (:func:`ctsgan.nodules.lung_mask.lung_mask`,
  away from listed nodules), with a procedural nodule blended in
  (:func:`ctsgan.nodules.inpainter.synthetic_nodule`): exact (nodule VOI -> healthy VOI) pairs.

Each step: one D update (least-squares PatchGAN on (candidate, condition, mask)), then one G
update (region-weighted L1 + ``w_adv`` x adversarial). The run dir gets ``config.yaml`` before
training, ``checkpoints/step_XXXXXXX.pt`` + ``checkpoints/latest.pt`` (state dicts written
atomically, loadable with ``weights_only=True``; they hold models, optimisers, step and the numpy
/ torch RNG states, so ``resume`` continues bit-exactly), ``metrics.jsonl`` and
``previews/step_XXXXXXX.png``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import hu_to_unit
from ctsgan.io.atomic import atomic_path, atomic_torch_save, atomic_write_text
from ctsgan.nodules.inpainter import (
    InpaintConfig,
    InpainterKind,
    build_critic,
    build_generator,
    condition_input,
    parse_kind,
    synthetic_nodule,
    voi_masks,
)
from ctsgan.nodules.losses import InpaintLoss
from ctsgan.nodules.lung_mask import lung_mask
from ctsgan.nodules.paste import blend_weight, lung_depth_mm
from ctsgan.nodules.voi import ellipsoid_mask, extract_voi

__all__ = ["VoiSampler", "train_inpainter"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class VoiSampler:
    """Draws training batches for the injector or the eraser from a prepared dataset.

    Args:
        dataset: the prepared dataset.
        cfg: the training config (VOI size, mask geometry, eraser diameters, augmentation).
        kind: injector or eraser.
    """

    def __init__(self, dataset: PreparedDataset, cfg: InpaintConfig, kind: InpainterKind) -> None:
        self.ds, self.cfg, self.kind = dataset, cfg, kind
        if len(dataset) == 0:
            raise ValueError(f"{dataset.root}: no volumes in split {dataset.split!r}")
        self._vols = [np.asarray(dataset.load(i, mmap=False)) for i in range(len(dataset))]
        self._spacing = [tuple(float(s) for s in r.spacing) for r in dataset.rows]
        self.items: list[tuple[int, tuple[float, float, float], float]] = []
        for i, r in enumerate(dataset.rows):
            for n in dataset.nodules(r.id):
                self.items.append((i, (n.z, n.y, n.x), n.diameter_mm))
        if kind == InpainterKind.INJECTOR and not self.items:
            raise ValueError(f"{dataset.root}/nodules.csv lists no nodules in split {dataset.split!r}: "
                             "the injector trains on real nodule VOIs")
        self._depth: list[np.ndarray] = []
        if kind == InpainterKind.ERASER or cfg.inject_move_prob > 0:
            for i, r in enumerate(dataset.rows):
                lung = lung_mask(self._vols[i], self._spacing[i])
                for n in dataset.nodules(r.id):  # keep healthy VOIs away from real nodules
                    rad = [(0.5 * n.diameter_mm * cfg.mask_scale + 3.0) / s for s in self._spacing[i]]
                    lung &= ~ellipsoid_mask(lung.shape, rad, (n.z, n.y, n.x))
                self._depth.append(lung_depth_mm(lung, self._spacing[i]))
            if kind == InpainterKind.ERASER and not any((d > 0).any() for d in self._depth):
                raise ValueError(f"{dataset.root}: no lung found in any volume; the eraser needs healthy lung VOIs")

    def _augment(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        if not self.cfg.augment:
            return arrays
        for ax in range(3):
            if rng.random() < 0.5:
                arrays = [np.flip(a, axis=ax) for a in arrays]
        return [np.ascontiguousarray(a) for a in arrays]

    def _injector_item(self, rng: np.random.Generator) -> list[np.ndarray]:
        c = self.cfg
        vi, centre, d_mm = self.items[int(rng.integers(len(self.items)))]
        sp = self._spacing[vi]
        d_mm = min(d_mm, c.max_diameter_vox() * min(sp))
        # no centre jitter: the mask is the only hint of where the nodule sits, so it stays exact
        voi = extract_voi(self._vols[vi], centre, c.voi_size).astype(np.float32)
        nodule, mask = voi_masks(c.voi_size, d_mm, sp, c.mask_scale, c.mask_margin_vox)
        if c.inject_move_prob > 0 and rng.random() < c.inject_move_prob:
            voi = self._moved_nodule(voi, nodule, mask, d_mm, rng)
        return [voi, voi, nodule.astype(np.float32), mask.astype(np.float32)]

    def _moved_nodule(
        self, voi: np.ndarray, nodule: np.ndarray, mask: np.ndarray, d_mm: float, rng: np.random.Generator
    ) -> np.ndarray:
        """The real nodule of ``voi`` moved into a healthy VOI at a random lung point (any volume).

        A dataset holds few nodules, so the generator would otherwise see few contexts and learn
        them rather than "paint a nodule inside the mask". Inside the nodule sphere the target is
        the real nodule; a half-cosine ramp over ``mask_margin_vox`` voxels, still inside the mask
        (which the generator never sees), blends it into the new context. Returns (S, S, S) float32 HU;
        ``voi`` itself when no lung point is deep enough.
        """
        c = self.cfg
        vols = [i for i, d in enumerate(self._depth) if (d > 0.5 * d_mm).any()]
        if not vols:
            return voi
        vi = vols[int(rng.integers(len(vols)))]
        idx = np.flatnonzero(self._depth[vi] > 0.5 * d_mm)
        centre = tuple(float(v) for v in np.unravel_index(int(rng.choice(idx)), self._vols[vi].shape))
        context = extract_voi(self._vols[vi], centre, c.voi_size).astype(np.float32)
        w = blend_weight(nodule, c.mask_margin_vox) * mask
        return (w * voi + (1 - w) * context).astype(np.float32)

    def _eraser_item(self, rng: np.random.Generator) -> list[np.ndarray]:
        c = self.cfg
        for _ in range(100):
            vi = int(rng.integers(len(self._vols)))
            sp = self._spacing[vi]
            d_mm = float(rng.uniform(c.eraser_min_diameter_mm, c.eraser_max_diameter_mm))
            d_mm = min(d_mm, c.max_diameter_vox() * min(sp))
            idx = np.flatnonzero(self._depth[vi] > 0.5 * d_mm)
            if idx.size:
                break
        else:
            raise ValueError(f"{self.ds.root}: no lung point deep enough for the eraser's nodules")
        centre = tuple(float(v) for v in np.unravel_index(int(rng.choice(idx)), self._vols[vi].shape))
        healthy = extract_voi(self._vols[vi], centre, c.voi_size).astype(np.float32)
        d_vox = [d_mm / s for s in sp]
        with_nodule, _ = synthetic_nodule(healthy, d_vox, rng)
        nodule, mask = voi_masks(c.voi_size, d_mm, sp, c.mask_scale, c.mask_margin_vox)
        return [with_nodule, healthy, nodule.astype(np.float32), mask.astype(np.float32)]

    def batch(self, rng: np.random.Generator, n: int) -> Batch:
        """(input VOI, target VOI) in [-1, 1] and (nodule, mask) in {0, 1}; each (n, 1, S, S, S)."""
        items = []
        for _ in range(n):
            item = self._injector_item(rng) if self.kind == InpainterKind.INJECTOR else self._eraser_item(rng)
            items.append(self._augment(item, rng))
        c = self.cfg
        x = torch.as_tensor(hu_to_unit(np.stack([it[0] for it in items]), c.hu_min, c.hu_max))[:, None]
        y = torch.as_tensor(hu_to_unit(np.stack([it[1] for it in items]), c.hu_min, c.hu_max))[:, None]
        nod = torch.as_tensor(np.stack([it[2] for it in items]))[:, None]
        mask = torch.as_tensor(np.stack([it[3] for it in items]))[:, None]
        return x, y, nod, mask


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    st = rng.bit_generator.state
    # PCG64's 128-bit integers are kept as strings so the checkpoint stays plain data
    return {"bit_generator": st["bit_generator"], "state": str(st["state"]["state"]), "inc": str(st["state"]["inc"]),
            "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def _set_rng_state(rng: np.random.Generator, d: dict[str, Any]) -> None:
    rng.bit_generator.state = {
        "bit_generator": d["bit_generator"], "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"]),
    }


def _save_preview(path: Path, x: torch.Tensor, fake: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
    """Mid axial slices of up to 4 samples: rows = condition input | generated (composited) | target."""
    from PIL import Image

    comp = mask * fake + (1 - mask) * y
    rows = []
    for t in (x, comp, y):
        mid = t.shape[2] // 2
        sl = t[: min(4, t.shape[0]), 0, mid].detach().cpu().numpy()  # (n, S, S)
        rows.append(np.concatenate(list(sl), axis=1))
    img = ((np.concatenate(rows, axis=0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    img = np.kron(img, np.ones((4, 4), dtype=np.uint8))
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def train_inpainter(
    model: str,
    cfg: InpaintConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    steps: int | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Train an injector or eraser and return the path of the last checkpoint.

    Args:
        model: ``"injector"`` or ``"eraser"`` (overrides ``cfg.model``).
        cfg: training config.
        data_dir: a prepared dataset dir.
        run_dir: output run dir (config.yaml, checkpoints/, metrics.jsonl, previews/).
        steps: total steps to reach (default ``cfg.steps``); with ``resume`` training continues
            from the latest checkpoint up to this step.
        resume: continue from ``run_dir/checkpoints/latest.pt``.
        device: torch device (default: CUDA when available, else CPU).
        progress: show a tqdm bar.
    """
    from ctsgan.training.run_lock import run_dir_lock

    with run_dir_lock(run_dir):  # one training process per run dir
        return _train_inpainter(model, cfg, data_dir, run_dir, steps, resume, device, progress)


def _train_inpainter(
    model: str,
    cfg: InpaintConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    steps: int | None,
    resume: bool,
    device: str | None,
    progress: bool,
) -> Path:
    from tqdm import tqdm

    kind = parse_kind(model)
    cfg = cfg.model_copy(update={"model": kind.value})
    total = int(steps if steps is not None else cfg.steps)
    if total < 1:
        raise ValueError(f"steps must be >= 1, got {total}")
    run = Path(run_dir)
    ckdir = run / "checkpoints"
    latest = ckdir / "latest.pt"
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen, disc = build_generator(cfg).to(dev), build_critic(cfg).to(dev)
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=betas)
    step = 0
    history: list[dict[str, float]] = []
    if resume:
        if not latest.exists():
            raise FileNotFoundError(f"{latest}: nothing to resume from")
        state = torch.load(latest, map_location="cpu", weights_only=True)
        if state["config"]["model"] != kind.value:
            raise ValueError(f"{latest} is a {state['config']['model']} run, not {kind.value}")
        cfg = InpaintConfig.from_dict(state["config"], source=str(latest))
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step = int(state["step"])
        _set_rng_state(rng, state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()] \
            if (run / "metrics.jsonl").exists() else []
        history = [h for h in history if h["step"] <= step]
    elif latest.exists():
        raise FileExistsError(f"{run} already holds a run; pass resume=True (--resume) or use a new dir")
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", cfg.to_yaml())

    sampler = VoiSampler(PreparedDataset(data_dir, split=cfg.split), cfg, kind)
    loss = InpaintLoss(cfg.w_nodule, cfg.w_boundary, cfg.w_context, cfg.w_adv)

    def checkpoint(x: torch.Tensor, fake: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> Path:
        state = {
            "config": cfg.model_dump(mode="json"), "step": step, "generator": gen.state_dict(),
            "discriminator": disc.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "numpy_rng": _rng_state(rng), "torch_rng": torch.get_rng_state(),
        }
        path = atomic_torch_save(ckdir / f"step_{step:07d}.pt", state)
        atomic_torch_save(latest, state)
        atomic_write_text(run / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        _save_preview(run / "previews" / f"step_{step:07d}.png", x, fake, y, mask)
        return path

    gen.train()
    disc.train()
    bar = tqdm(total=total, initial=step, disable=not progress, desc=f"train {kind.value}")
    last = latest
    t0 = time.perf_counter()
    while step < total:
        x, y, nod, mask = (t.to(dev) for t in sampler.batch(rng, cfg.batch_size))
        cond = condition_input(kind, x, mask)
        fake = gen(cond, mask)
        comp = mask * fake + (1 - mask) * y

        opt_d.zero_grad(set_to_none=True)
        d_loss = loss.discriminator(disc(y, cond, mask), disc(comp.detach(), cond, mask))
        d_loss.backward()
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        g_loss, l1, adv = loss.generator(fake, y, nod, mask, disc(comp, cond, mask))
        g_loss.backward()
        opt_g.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == total:
            # L1 inside the nodule sphere in HU (network units x half the window width)
            hu_scale = 0.5 * (cfg.hu_max - cfg.hu_min)
            l1_nod = float(((fake.detach() - y).abs() * nod).sum() / nod.sum().clamp(min=1)) * hu_scale
            history.append({"step": step, "loss_d": float(d_loss.detach()), "loss_g": float(g_loss.detach()), "l1": float(l1.detach()),
                            "adv": float(adv.detach()), "l1_nodule_hu": l1_nod, "sec": time.perf_counter() - t0})
            bar.set_postfix(l1=f"{float(l1.detach()):.4f}", d=f"{float(d_loss.detach()):.3f}")
        if step % cfg.ckpt_every == 0 or step == total:
            last = checkpoint(x, fake, y, mask)
    bar.close()
    return last
