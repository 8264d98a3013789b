"""GAN objectives and gradient penalties (see :mod:`ctsgan.losses.gan`)."""

from ctsgan.losses.gan import GanLoss, Penalty, d_loss, g_loss, r1_penalty, wgan_gp_penalty

__all__ = ["GanLoss", "Penalty", "d_loss", "g_loss", "r1_penalty", "wgan_gp_penalty"]
