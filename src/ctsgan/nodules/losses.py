"""Objective of the injector / eraser: region-weighted L1 ("multi-mask" reconstruction) + adversarial.

The L1 term weights three regions of the VOI differently: the nodule sphere (``w_nodule``), the
shell between the nodule and the mask sphere, i.e. the nodule's boundary (``w_boundary``), and
the context outside the mask (``w_context``). Each region's L1 is a mean over that region's own
voxels before the weights apply (:func:`region_l1`): a 10 mm nodule at ~2.5 mm voxels is ~30 of the
32^3 VOI's 32768 voxels, so with one mean over the whole VOI the nodule carried ~1 % of the loss
and short trainings painted faint blobs; per-region means keep its share at ``w_nodule`` / sum(w).
The means are taken per VOI, then averaged over the batch: pooled over the batch, a 6 mm nodule
beside a 30 mm one is (6/30)^3 < 1 % of the nodule voxels, and the injector learned to paint
almost nothing for small nodules (docs/real_chest.md, part 3). The adversarial term is
:mod:`ctsgan.losses.gan`'s (``lsgan`` by default: least squares, MONAI's ``PatchAdversarialLoss``
numbers) on the 3D PatchGAN's logits.
"""

from __future__ import annotations

import torch

from ctsgan.losses.gan import GanLoss, d_loss, g_loss

__all__ = ["InpaintLoss", "region_l1", "region_weights", "weighted_l1"]


def region_weights(
    nodule: torch.Tensor, mask: torch.Tensor, w_nodule: float, w_boundary: float, w_context: float
) -> torch.Tensor:
    """Per-voxel L1 weights. nodule, mask: (B, 1, S, S, S) in {0, 1} (nodule inside mask) -> same shape."""
    boundary = (mask - nodule).clamp(min=0)
    return w_nodule * nodule + w_boundary * boundary + w_context * (1 - mask)


def weighted_l1(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``weight * |fake - real|`` normalised by the weight sum. All (B, 1, S, S, S) -> scalar."""
    return (weight * (fake - real).abs()).sum() / weight.sum().clamp(min=1e-8)


def region_l1(
    fake: torch.Tensor, real: torch.Tensor, nodule: torch.Tensor, mask: torch.Tensor,
    w_nodule: float, w_boundary: float, w_context: float,
) -> torch.Tensor:
    """Multi-mask L1: sum over regions of weight x (mean |fake - real| over that region), / sum of weights.

    Regions: nodule sphere, boundary shell (mask minus nodule), context (outside the mask). Each
    region's mean is over its voxels in each VOI, then averaged over the VOIs in which the region is
    not empty, so every nodule of a batch counts alike whatever its size; a region empty in every
    VOI adds 0.

    Args:
        fake, real: (B, 1, S, S, S) VOIs.
        nodule, mask: (B, 1, S, S, S) in {0, 1}, nodule inside mask.
        w_nodule, w_boundary, w_context: region weights.

    Returns:
        scalar tensor.
    """
    diff = (fake - real).abs()
    total = diff.new_zeros(())
    for region, w in ((nodule, w_nodule), ((mask - nodule).clamp(min=0), w_boundary), (1 - mask, w_context)):
        size = region.flatten(1).sum(1)  # (B,) voxels of the region in each VOI
        per_voi = (diff * region).flatten(1).sum(1) / size.clamp(min=1.0)
        present = (size > 0).to(diff.dtype)
        total = total + w * (per_voi * present).sum() / present.sum().clamp(min=1.0)
    return total / max(w_nodule + w_boundary + w_context, 1e-8)


class InpaintLoss:
    """Computes the D and G losses of one batch.

    Args:
        w_nodule, w_boundary, w_context: L1 region weights.
        w_adv: weight of the adversarial term in the G loss.
        loss: the adversarial objective (:class:`ctsgan.losses.gan.GanLoss`).
    """

    def __init__(
        self, w_nodule: float, w_boundary: float, w_context: float, w_adv: float, loss: GanLoss | str = GanLoss.LSGAN
    ) -> None:
        self.w = (w_nodule, w_boundary, w_context)
        self.w_adv = w_adv
        self.loss = loss

    def discriminator(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        """D loss from patch logits (B, 1, P, P, P) of a real and a generated batch."""
        return d_loss(d_real, d_fake, self.loss)

    def generator(
        self, fake: torch.Tensor, target: torch.Tensor, nodule: torch.Tensor, mask: torch.Tensor, d_fake: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """G loss = region L1(fake, target) (:func:`region_l1`) + w_adv * adversarial. Returns (total, l1, adv)."""
        l1 = region_l1(fake, target, nodule, mask, *self.w)
        adv = g_loss(d_fake, self.loss)
        return l1 + self.w_adv * adv, l1, adv
