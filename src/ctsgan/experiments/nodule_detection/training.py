"""Training and evaluating the 3D SqueezeNet classifier of one experiment cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctsgan.experiments.nodule_detection.config import DetectionConfig
from ctsgan.experiments.nodule_detection.data import LabelledVolume
from ctsgan.networks.squeezenet3d import make_optimizer


@dataclass
class TensorSet:
    """x: (N, 1, s, s, s) float32 in [0, 1]; y: (N,) int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_volumes(cls, volumes: Sequence[LabelledVolume], split: str) -> TensorSet:
        sel = [v for v in volumes if v.split == split]
        if not sel:
            raise ValueError(f"no volumes in split {split!r}")
        x = torch.from_numpy(np.stack([np.asarray(v.volume, dtype=np.float32) for v in sel]))
        if x.ndim != 5:
            raise ValueError(f"expected classifier inputs (N, 1, s, s, s), got {tuple(x.shape)}")
        return cls(x, torch.tensor([v.label for v in sel], dtype=torch.int64))

    def __len__(self) -> int:
        return int(self.y.shape[0])


@torch.no_grad()
def test_outcomes(model: torch.nn.Module, data: TensorSet, batch_size: int = 16) -> list[int]:
    """1 where ``model`` classifies the scan right, 0 where not, in ``data``'s order."""
    model.eval()
    logits = torch.cat([model(data.x[i : i + batch_size]) for i in range(0, len(data), batch_size)])  # (N, 2)
    return (logits.argmax(1) == data.y).to(torch.int64).tolist()


def limit_training_set(data: TensorSet, limit: int | None, seed: int) -> TensorSet:
    """A seeded, label-balanced subset of ``limit`` training scans (``limit // 2`` of each label,
    as far as each label has them); ``data`` itself when ``limit`` is None or not smaller."""
    if limit is None or limit >= len(data):
        return data
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for label, n in ((1, limit // 2), (0, limit - limit // 2)):
        idx = torch.nonzero(data.y == label).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:n]])
    keep = torch.cat(picks).sort().values
    return TensorSet(data.x[keep], data.y[keep])


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, data: TensorSet, batch_size: int = 16) -> dict[str, float]:
    """Accuracy, ROC AUC (torchmetrics) and mean cross-entropy of ``model`` on ``data``."""
    from torchmetrics.functional.classification import binary_auroc

    model.eval()
    logits = torch.cat([model(data.x[i : i + batch_size]) for i in range(0, len(data), batch_size)])  # (N, 2)
    loss = torch.nn.functional.cross_entropy(logits, data.y).item()
    prob = logits.softmax(1)[:, 1]
    acc = (logits.argmax(1) == data.y).float().mean().item()
    auc = binary_auroc(prob, data.y).item() if 0 < int(data.y.sum()) < len(data) else float("nan")
    return {"accuracy": acc, "auc": auc, "loss": loss}


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips along z, y, x (one draw per axis per batch): x (B, 1, D, H, W)."""
    flips = torch.rand(3, generator=gen) < 0.5
    dims = [2 + i for i in range(3) if bool(flips[i])]
    return x.flip(dims) if dims else x


@dataclass
class TrainOutcome:
    """Best (model-selected) weights of one training run."""

    state: dict[str, torch.Tensor]
    best_step: int
    val: dict[str, float]


def train_classifier(
    model: torch.nn.Module,
    train: TensorSet,
    val: TensorSet,
    cfg: DetectionConfig,
    steps: int,
    seed: int,
    progress: bool = False,
    desc: str = "",
    log_dir: Path | None = None,
) -> TrainOutcome:
    """Adam (cfg.lr, betas) on shuffled mini-batches for ``steps`` steps; model selection on ``val``.

    Validation runs every ``cfg.eval_every`` steps and after the last one; the kept weights are
    those with the best validation accuracy (ties: lower validation loss, then earlier step).
    With ``log_dir``, each validation writes ``train/loss`` and ``val/accuracy``, ``val/auc``,
    ``val/loss`` to ``log_dir/metrics.jsonl`` (the GAN runs' :class:`~ctsgan.training.run_log.RunLogger`).
    """
    from tqdm.auto import tqdm

    from ctsgan.training.run_log import RunLogger

    logger = RunLogger(log_dir, True, tensorboard=False) if log_dir is not None else None
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, lr=cfg.lr, betas=cfg.betas)
    best: TrainOutcome | None = None
    order = torch.randperm(len(train), generator=gen)
    pos = 0
    bar = tqdm(range(1, steps + 1), desc=desc, leave=False, disable=not progress)
    for step in bar:
        model.train()
        if pos + cfg.batch_size > len(train):
            order, pos = torch.randperm(len(train), generator=gen), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        x = train.x[idx]
        if cfg.augment:
            x = _augment(x, gen)
        loss = torch.nn.functional.cross_entropy(model(x), train.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{desc}: training loss is {loss.item()} at step {step}")
        if step % cfg.eval_every == 0 or step == steps:
            m = evaluate_classifier(model, val, cfg.batch_size)
            if best is None or (m["accuracy"], -m["loss"]) > (best.val["accuracy"], -best.val["loss"]):
                best = TrainOutcome({k: v.detach().clone() for k, v in model.state_dict().items()}, step, m)
            bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{m['accuracy']:.3f}")
            if logger is not None:
                logger.log(step, {"train/loss": loss.item(), **{f"val/{k}": v for k, v in m.items()}})
    if logger is not None:
        logger.close()
    assert best is not None
    return best


# ----------------------------------------------------------------------------------------------
# The experiment grid


