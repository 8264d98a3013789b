"""Adversarial losses and gradient penalties shared by every GAN recipe.

Discriminator outputs are raw logits / critic values of shape (B,) (or (B, 1)).

- ``js``: the vanilla GAN objective (Goodfellow et al. 2014; CT-SGAN Eq. 2). The discriminator
  minimises ``softplus(-D(real)) + softplus(D(fake))``; the generator uses the usual
  non-saturating form ``softplus(-D(fake))``.
- ``wgan``: Wasserstein critic (Arjovsky et al. 2017): D minimises ``D(fake) - D(real)``,
  G minimises ``-D(fake)``.
- ``lsgan``: least squares (Mao et al. 2017), MONAI's ``PatchAdversarialLoss("least_squares")`` on raw logits:
  D minimises ``(mean (D(real) - 1)^2 + mean D(fake)^2) / 2``, G minimises ``mean (D(fake) - 1)^2``
  (the injector / eraser's patch discriminator).
- ``r1``: Mescheder et al. 2018, ``gamma / 2 * E ||grad_x D(x_real)||^2``.
- ``wgan-gp``: Gulrajani et al. 2017, ``lambda * E (||grad_x D(x_hat)||_2 - 1)^2`` on random
  interpolates ``x_hat`` between real and fake.
- LeCam (Tseng et al. 2021, for limited data): ``E relu(D(real) - a_fake)^2 + E relu(a_real -
  D(fake))^2`` with ``a_real`` / ``a_fake`` exponential moving averages of D's mean logits
  (:class:`LeCamAnchors`): keeps D's real and fake predictions from drifting apart, which is how a
  discriminator memorises a handful of training images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn

from ctsgan.config import parse_choice


class GanLoss(StrEnum):
    """Adversarial objective."""

    JS = "js"
    WGAN = "wgan"
    LSGAN = "lsgan"


class Penalty(StrEnum):
    """Gradient penalty on the discriminator."""

    R1 = "r1"
    WGAN_GP = "wgan-gp"
    NONE = "none"


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: GanLoss | str) -> torch.Tensor:
    """Discriminator loss (scalar).

    Args:
        real_logits: D outputs on real samples, shape (B,) or (B, 1).
        fake_logits: D outputs on generated samples, shape (B',) or (B', 1).
        kind: ``js``, ``wgan`` or ``lsgan``.
    """
    kind = parse_choice(GanLoss, str(kind), "loss")
    if kind == GanLoss.JS:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == GanLoss.LSGAN:
        return 0.5 * ((real_logits - 1).pow(2).mean() + fake_logits.pow(2).mean())
    return fake_logits.mean() - real_logits.mean()


def g_loss(fake_logits: torch.Tensor, kind: GanLoss | str) -> torch.Tensor:
    """Generator loss (scalar) on D outputs for generated samples (B,) or (B, 1)."""
    kind = parse_choice(GanLoss, str(kind), "loss")
    if kind == GanLoss.JS:
        return F.softplus(-fake_logits).mean()
    if kind == GanLoss.LSGAN:
        return (fake_logits - 1).pow(2).mean()
    return -fake_logits.mean()


def g_loss_per_sample(fake_logits: torch.Tensor, kind: GanLoss | str) -> torch.Tensor:
    """Generator loss of each generated sample (B,) from D outputs (B,) or (B, 1)."""
    kind = parse_choice(GanLoss, str(kind), "loss")
    logits = fake_logits.reshape(fake_logits.shape[0], -1)
    if kind == GanLoss.JS:
        per_output = F.softplus(-logits)
    elif kind == GanLoss.LSGAN:
        per_output = (logits - 1).pow(2)
    else:
        per_output = -logits
    return per_output.mean(1)


def _grad_sq_norm(outputs: torch.Tensor, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample squared gradient norm of ``outputs.sum()`` w.r.t. ``inputs`` (first dim = batch)."""
    grads = torch.autograd.grad(outputs.sum(), list(inputs), create_graph=True)
    return sum(g.pow(2).reshape(g.shape[0], -1).sum(1) for g in grads)  # type: ignore[return-value]


def r1_penalty(real_logits: torch.Tensor, real_inputs: Sequence[torch.Tensor] | torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 penalty ``gamma / 2 * mean ||grad D(real)||^2`` (Mescheder et al. 2018).

    Args:
        real_logits: D outputs (B,) computed from ``real_inputs``, which must require grad.
        real_inputs: the real tensor(s) fed to D, each with batch first, e.g. (B, C, H, W).
        gamma: penalty weight.
    """
    inputs = [real_inputs] if isinstance(real_inputs, torch.Tensor) else list(real_inputs)
    return 0.5 * gamma * _grad_sq_norm(real_logits, inputs).mean()


def wgan_gp_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``weight * mean (||grad D(x_hat)|| - 1)^2`` (Gulrajani et al. 2017).

    Args:
        critic: maps a batch shaped like ``real`` to (B,) outputs (any extra conditioning bound in).
        real: real batch, e.g. (B, C, H, W) or (B, C, D, H, W).
        fake: generated batch, same shape as ``real`` (detached).
        weight: lambda.
        generator: RNG for the interpolation weights (for reproducible runs).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device="cpu")
    alpha = alpha.to(device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    norm = _grad_sq_norm(critic(x_hat), [x_hat]).add(1e-12).sqrt()
    return weight * (norm - 1.0).pow(2).mean()


class LeCamAnchors(nn.Module):
    """Exponential moving averages of one discriminator's mean logit on real and on generated inputs.

    Buffers (``real``, ``fake``: float32 scalars, starting at 0), so a checkpoint of the module
    that holds them carries them and a resumed run continues exactly.
    """

    real: torch.Tensor
    fake: torch.Tensor

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("real", torch.zeros(()))
        self.register_buffer("fake", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        """Move the anchors towards this batch's mean logits."""
        self.real.lerp_(real_logits.float().mean().to(self.real.device), 1 - self.decay)
        self.fake.lerp_(fake_logits.float().mean().to(self.fake.device), 1 - self.decay)

    def penalty(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """``mean relu(D(real) - a_fake)^2 + mean relu(a_real - D(fake))^2`` (scalar)."""
        a_real, a_fake = self.real.to(real_logits.dtype), self.fake.to(real_logits.dtype)
        return F.relu(real_logits - a_fake).pow(2).mean() + F.relu(a_real - fake_logits).pow(2).mean()


def discriminator_objective(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    loss: GanLoss | str,
    penalty: Penalty | str,
    penalty_weight: float,
    generator: torch.Generator | None = None,
    lecam: LeCamAnchors | None = None,
    lecam_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One discriminator's full loss: adversarial term + gradient penalty (+ LeCam term).

    Args:
        critic: maps a batch (B, ...) to logits (B,); conditioning (e.g. slice positions) bound in.
        real: real batch (B, ...), float in [-1, 1].
        fake: generated batch (B', ...) (detached by this function).
        loss: ``js``, ``wgan`` or ``lsgan``.
        penalty: ``r1``, ``wgan-gp`` or ``none``.
        penalty_weight: gamma (R1) or lambda (WGAN-GP); 0 skips the penalty (and its double backward).
        generator: RNG for WGAN-GP interpolation weights.
        lecam: this discriminator's anchors; with ``lecam_weight`` > 0 they are updated from this
            batch's logits, then ``lecam_weight * lecam.penalty(...)`` is added.
        lecam_weight: weight of the LeCam term (0: none, anchors untouched).

    Returns:
        (total loss, detached scalars: ``adv``, ``penalty``, ``real_score``, ``fake_score``, and
        ``lecam`` when it is on).
    """
    if lecam_weight > 0 and lecam is None:
        raise ValueError("lecam_weight > 0 needs the discriminator's LeCamAnchors")
    penalty = parse_choice(Penalty, str(penalty), "penalty")
    if penalty_weight == 0:
        penalty = Penalty.NONE
    real = real.detach()
    if penalty == Penalty.R1:
        real = real.requires_grad_(True)
    real_logits = critic(real)
    fake_logits = critic(fake.detach())
    adv = d_loss(real_logits, fake_logits, loss)
    if penalty == Penalty.R1:
        pen = r1_penalty(real_logits, real, penalty_weight)
    elif penalty == Penalty.WGAN_GP:
        pen = wgan_gp_penalty(critic, real, fake, penalty_weight, generator)
    else:
        pen = torch.zeros((), device=adv.device)
    scalars = {
        "adv": adv.detach(),
        "penalty": pen.detach(),
        "real_score": real_logits.detach().mean(),
        "fake_score": fake_logits.detach().mean(),
    }
    if lecam is not None and lecam_weight > 0:
        lecam.update(real_logits.detach(), fake_logits.detach())
        reg = lecam_weight * lecam.penalty(real_logits, fake_logits)
        scalars["lecam"] = reg.detach()
        return adv + pen + reg, scalars
    return adv + pen, scalars
