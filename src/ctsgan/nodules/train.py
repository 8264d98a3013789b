"""Training data of the nodule injector / eraser, and :func:`train_inpainter`.

They train on the shared loop (:mod:`ctsgan.training.loop`) through their recipe
(:mod:`ctsgan.nodules.recipe`): DDP, exact resume, the NaN stop, TensorBoard and the one
checkpoint format, as every other model.

Data (from a prepared dataset, :class:`ctsgan.data.dataset.PreparedDataset`):

- **injector**: VOIs centred on the nodules of ``nodules.csv`` (random flips); the generator sees
  the VOI with the mask sphere blanked and must paint it back. With probability
  ``inject_move_prob`` the real nodule is first moved into a healthy VOI at a random lung point
  (more contexts than a dataset's few nodules give).
- **eraser**: healthy VOIs at random lung points (:func:`ctsgan.nodules.lung_mask.lung_mask`,
  away from listed nodules), with a procedural nodule blended in
  (:func:`ctsgan.nodules.inpainter.synthetic_nodule`): exact (nodule VOI -> healthy VOI) pairs.

Each step: one D update (least-squares PatchGAN on (candidate, condition, mask)), then one G
update (region-weighted L1 + ``w_adv`` x adversarial) on the same generated VOIs. The run dir is
the loop's: ``config.yaml``, ``checkpoints/step-XXXXXXXX.pt``, ``metrics.jsonl``,
``tensorboard/`` and ``previews/step-XXXXXXXX.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import hu_to_unit
from ctsgan.nodules.inpainter import (
    InpaintConfig,
    InpainterKind,
    parse_kind,
    synthetic_nodule,
    voi_masks,
)
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
        x = torch.as_tensor(hu_to_unit(np.stack([it[0] for it in items]), *c.hu_window))[:, None]
        y = torch.as_tensor(hu_to_unit(np.stack([it[1] for it in items]), *c.hu_window))[:, None]
        nod = torch.as_tensor(np.stack([it[2] for it in items]))[:, None]
        mask = torch.as_tensor(np.stack([it[3] for it in items]))[:, None]
        return x, y, nod, mask


def train_inpainter(
    model: str,
    cfg: InpaintConfig | None,
    data_dir: str | Path,
    run_dir: str | Path,
    steps: int | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Train an injector or eraser on the shared loop and return the path of the last checkpoint.

    Args:
        model: ``"injector"`` or ``"eraser"`` (overrides ``cfg.model``).
        cfg: training config; with ``resume`` it may be None (the run's own), and a given one must
            equal the run's except ``steps`` (the differing keys are named otherwise).
        data_dir: a prepared dataset dir (``cfg.split`` of it; None: every split).
        run_dir: output run dir (config.yaml, checkpoints/, metrics.jsonl, tensorboard/, previews/).
        steps: total steps to reach (default ``cfg.steps``); with ``resume`` training continues
            from the latest checkpoint up to this step.
        resume: continue from the run dir's latest checkpoint.
        device: ``cpu`` or ``cuda`` (default: ``cfg.device``, i.e. CUDA when available).
        progress: show a tqdm bar.

    Raises:
        ValueError: ``resume`` of a run of the other model, or of a run from the inpainters' former
            loop (``checkpoints/latest.pt``: its weights load for inject / erase, it cannot resume).
    """
    from ctsgan.training import train
    from ctsgan.training.checkpoint import latest_checkpoint

    kind = parse_kind(model)
    if cfg is None and not resume:
        raise ValueError("a new injector / eraser run needs a config (a preset name or a YAML path)")
    if cfg is not None:
        update: dict[str, Any] = {"model": kind.value}
        if device is not None:
            update["device"] = torch.device(device).type
        cfg = cfg.model_copy(update=update)
    run = Path(run_dir)
    if resume and latest_checkpoint(run) is None and (run / "checkpoints" / "latest.pt").exists():
        raise ValueError(f"{run}: a run of the inpainters' former training loop (checkpoints/latest.pt) cannot be resumed; "
                         "its weights still load for `nodules inject` / `erase`: start a new --out to train further")
    threads = torch.get_num_threads()
    if cfg is not None and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return train(kind.value, cfg, data_dir, run, steps=steps, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)
