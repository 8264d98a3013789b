"""Objective of the injector / eraser: region-weighted L1 ("multi-mask" reconstruction) + adversarial.

The L1 term weights three regions of the VOI differently: the nodule sphere (``w_nodule``), the
shell between the nodule and the mask sphere, i.e. the nodule's boundary (``w_boundary``), and
the context outside the mask (``w_context``). The adversarial term is MONAI's
``PatchAdversarialLoss`` (least squares) on the 3D PatchGAN's logits.
"""

from __future__ import annotations

import torch
from monai.losses import PatchAdversarialLoss

__all__ = ["InpaintLoss", "region_weights", "weighted_l1"]


def region_weights(
    nodule: torch.Tensor, mask: torch.Tensor, w_nodule: float, w_boundary: float, w_context: float
) -> torch.Tensor:
    """Per-voxel L1 weights. nodule, mask: (B, 1, S, S, S) in {0, 1} (nodule inside mask) -> same shape."""
    boundary = (mask - nodule).clamp(min=0)
    return w_nodule * nodule + w_boundary * boundary + w_context * (1 - mask)


def weighted_l1(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``weight * |fake - real|`` normalised by the weight sum. All (B, 1, S, S, S) -> scalar."""
    return (weight * (fake - real).abs()).sum() / weight.sum().clamp(min=1e-8)


class InpaintLoss:
    """Computes the D and G losses of one batch.

    Args:
        w_nodule, w_boundary, w_context: L1 region weights.
        w_adv: weight of the adversarial term in the G loss.
    """

    def __init__(self, w_nodule: float, w_boundary: float, w_context: float, w_adv: float) -> None:
        self.w = (w_nodule, w_boundary, w_context)
        self.w_adv = w_adv
        self.adv = PatchAdversarialLoss(criterion="least_squares")

    def discriminator(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        """Least-squares D loss from patch logits (B, 1, P, P, P) of a real and a generated batch."""
        real = self.adv(d_real, target_is_real=True, for_discriminator=True)
        fake = self.adv(d_fake, target_is_real=False, for_discriminator=True)
        return 0.5 * (real + fake)  # type: ignore[operator]

    def generator(
        self, fake: torch.Tensor, target: torch.Tensor, nodule: torch.Tensor, mask: torch.Tensor, d_fake: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """G loss = weighted L1(fake, target) + w_adv * adversarial. Returns (total, l1, adv)."""
        l1 = weighted_l1(fake, target, region_weights(nodule, mask, *self.w))
        adv = self.adv(d_fake, target_is_real=True, for_discriminator=False)
        return l1 + self.w_adv * adv, l1, adv  # type: ignore[return-value]
