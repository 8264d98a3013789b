"""The injector / eraser as recipes of the shared training loop (``--model injector | eraser``).

Both are one conditional inpainting GAN (:mod:`ctsgan.nodules.inpainter`). A training step is
the loop's: the D phase draws a batch of VOIs (:class:`~ctsgan.nodules.train.VoiSampler`),
generates the masked region, and scores (target, condition, mask) against (composite, condition,
mask) with the 3D PatchGAN; the G phase, after D's update, scores the same generated VOIs
(kept with their graph in the batch) with region-weighted L1 + ``w_adv`` x adversarial
(:class:`~ctsgan.nodules.losses.InpaintLoss`).

These models fill VOIs: they do not generate volumes (``ctsgan nodules inject`` / ``erase``
apply them), so :meth:`InpaintRecipe.sample_volume` is an error and the preview shows VOIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctsgan.data.dataset import PreparedDataset
from ctsgan.losses.gan import discriminator_objective
from ctsgan.nodules.inpainter import (
    InpaintConfig,
    InpainterKind,
    build_critic,
    build_generator,
    condition_input,
)
from ctsgan.nodules.losses import InpaintLoss
from ctsgan.nodules.train import VoiSampler
from ctsgan.training.recipe import GanNetworks, GanRecipe, RealSampler, SampleOptions
from ctsgan.training.recipes import register_recipe

#: the D phase leaves its generated VOIs (with their graph) in the batch under these keys for the G phase
_FAKE, _COMPOSITE = "generated/fake", "generated/composite"


class InpaintSampler(RealSampler):
    """The loop's sampler: :class:`VoiSampler` batches drawn with this sampler's checkpointed RNG.

    ``sample(B)`` returns ``x`` (input VOI), ``y`` (target VOI), both (B, 1, S, S, S) in [-1, 1],
    and ``nodule``, ``mask`` (B, 1, S, S, S) in {0, 1}.
    """

    def __init__(self, dataset: PreparedDataset, seed: tuple[int, ...], config: InpaintConfig, kind: InpainterKind) -> None:
        super().__init__(dataset, seed, config.hu_window)
        self.voi = VoiSampler(dataset, config, kind)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        x, y, nodule, mask = self.voi.batch(self.rng, batch_size)
        return {"x": x, "y": y, "nodule": nodule, "mask": mask}


class InpaintRecipe(GanRecipe[InpaintConfig]):
    """Common part of the injector and eraser recipes (they differ in :attr:`kind` only)."""

    config_cls = InpaintConfig
    kind: InpainterKind

    generates_volumes = False

    def build_networks(self, config: InpaintConfig) -> GanNetworks:
        cfg = config
        return GanNetworks(build_generator(cfg), build_critic(cfg))

    def train_split(self, config: InpaintConfig) -> str | None:
        return config.split

    def make_sampler(self, config: InpaintConfig, dataset: PreparedDataset, seed: tuple[int, ...]) -> RealSampler:
        return InpaintSampler(dataset, seed, config, self.kind)

    def d_step(
        self,
        nets: GanNetworks,
        real: dict[str, torch.Tensor],
        config: InpaintConfig,
        noise: torch.Generator,
        *,
        penalty_weight: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = config
        x, y, mask = real["x"], real["y"], real["mask"]
        cond = condition_input(self.kind, x, mask)
        fake = nets.generator(cond, mask)  # with its graph: the G phase scores it after D's update
        comp = mask * fake + (1 - mask) * y
        real[_FAKE], real[_COMPOSITE] = fake, comp
        loss, scalars = discriminator_objective(
            lambda v: nets.discriminator(v, cond, mask), y, comp, cfg.loss, cfg.penalty, penalty_weight, noise
        )
        return loss, {f"d/{k}": v for k, v in scalars.items()}

    def g_step(
        self,
        nets: GanNetworks,
        batch_size: int,
        config: InpaintConfig,
        noise: torch.Generator,
        *,
        real: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = config
        if real is None or _FAKE not in real:
            raise ValueError(f"the {self.kind.value}'s G phase scores the VOIs its D phase generated: call d_step first "
                             "and pass its batch as real=")
        fake, comp = real.pop(_FAKE), real.pop(_COMPOSITE)
        y, nodule, mask = real["y"], real["nodule"], real["mask"]
        loss = InpaintLoss(cfg.w_nodule, cfg.w_boundary, cfg.w_context, cfg.w_adv, cfg.loss)
        total, l1, adv = loss.generator(fake, y, nodule, mask, nets.discriminator(comp, condition_input(self.kind, real["x"], mask), mask))
        hu_scale = 0.5 * (cfg.hu_window[1] - cfg.hu_window[0])  # network units -> HU
        l1_nodule = ((fake.detach() - y).abs() * nodule).sum() / nodule.sum().clamp(min=1) * hu_scale
        return total, {"g/l1": l1.detach(), "g/adv": adv.detach(), "g/l1_nodule_hu": l1_nodule}

    def render(
        self, generator: nn.Module, config: InpaintConfig, seeds: Sequence[int], device: torch.device, options: SampleOptions
    ) -> torch.Tensor:
        raise ValueError(f"the {self.kind.value} fills VOIs of existing volumes; it does not generate volumes "
                         f"(use `ctsgan nodules {'inject' if self.kind == InpainterKind.INJECTOR else 'erase'}`)")

    def save_preview(
        self,
        generator: nn.Module,
        config: InpaintConfig,
        device: torch.device,
        path: Path,
        spacing_zyx: tuple[float, float, float],
        real: dict[str, torch.Tensor] | None,
    ) -> None:
        """Mid axial slices of up to 4 VOIs of the last batch: rows condition input | generated
        (composited into the target) | target."""
        if real is None:
            return
        x, y, mask = (real[k][:4].to(device) for k in ("x", "y", "mask"))
        fake = generator(condition_input(self.kind, x, mask), mask)
        _save_voi_rows(path, [x, mask * fake + (1 - mask) * y, y])


def _save_voi_rows(path: Path, rows: Sequence[torch.Tensor]) -> None:
    """One PNG: each (n, 1, S, S, S) tensor in [-1, 1] a row of its samples' mid axial slices, 4x enlarged."""
    from PIL import Image

    from ctsgan.io.atomic import atomic_path

    strips = []
    for t in rows:
        mid = t.shape[2] // 2
        strips.append(np.concatenate(list(t[:, 0, mid].detach().float().cpu().numpy()), axis=1))  # (S, n*S)
    img = ((np.concatenate(strips, axis=0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    img = np.kron(img, np.ones((4, 4), dtype=np.uint8))
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


@register_recipe
class InjectorRecipe(InpaintRecipe):
    """The nodule injector: paints a nodule into the blanked mask sphere of a VOI."""

    name = "injector"
    preset_prefix = "injector"
    kind = InpainterKind.INJECTOR


@register_recipe
class EraserRecipe(InpaintRecipe):
    """The nodule eraser: paints healthy tissue over the mask sphere of a VOI."""

    name = "eraser"
    preset_prefix = "eraser"
    kind = InpainterKind.ERASER
