"""The paper's baseline: a vanilla 3D DCGAN (3D transposed convolutions to a cube, 3D conv critic).

CT-SGAN (Pesaranghader et al. 2021) compares against "a vanilla 3D GAN at 128^3, upsampled to
224^3". This module is that network pair, DCGAN-style (Radford et al. 2016) in 3D:

- :class:`Generator3D`: latent ``z`` (B, Z) -> ConvTranspose3d (+ BatchNorm3d + ReLU) to a
  ``s0^3`` seed cube (``s0`` in 4..7) -> ``k - 1`` blocks of [ConvTranspose3d(4, stride 2) +
  BatchNorm3d + ReLU], each doubling the edge, up to ``S/2`` -> a last ConvTranspose3d(4, stride 2)
  to one channel + tanh: a cube (B, 1, S, S, S) in [-1, 1] with ``S = s0 * 2^k``.
- :class:`Discriminator3D`: the mirror image: (B, 1, S, S, S) -> ``k`` blocks of
  [Conv3d(4, stride 2) + LeakyReLU(0.2)] down to ``s0^3`` -> Conv3d(kernel ``s0``) to one logit
  per volume (B,). No normalisation layer, so the R1 / WGAN-GP penalties (per-sample input
  gradients) are well defined.

Widths follow the DCGAN pyramid: ``base_channels`` at the finest hidden level (``S/2``, as in
DCGAN's ``ngf`` / ``ndf``), doubling at each coarser level and capped at ``max_channels``. ``base_channels`` is the width
that :mod:`ctsgan.bench.memory` holds equal when it compares this network with CT-SGAN's.

Pure ``nn.Module``s: typed arguments, no I/O, no config objects.
"""

from __future__ import annotations

import torch
from torch import nn

from ctsgan.networks.common import level_channels, size_plan


def seed_size_and_levels(size: int) -> tuple[int, int]:
    """``(s0, k)`` with ``size == s0 * 2**k``, ``4 <= s0 <= 7``, ``k >= 1`` (:func:`ctsgan.networks.common.size_plan`)."""
    return size_plan(size)


class Generator3D(nn.Module):
    """DCGAN-style 3D generator: latent (B, Z) -> volume (B, 1, S, S, S) in [-1, 1].

    Args:
        size: output cube edge S, of the form ``s0 * 2^k`` with ``4 <= s0 <= 7``, ``k >= 1``.
        latent_dim: Z, length of the Gaussian latent.
        base_channels: width at the finest hidden level (edge S/2); coarser levels are wider.
        max_channels: cap on any level's width.
        out_channels: channels of the output volume (1 for CT).
    """

    def __init__(
        self, size: int, latent_dim: int = 128, base_channels: int = 16, max_channels: int = 256, out_channels: int = 1
    ) -> None:
        super().__init__()
        s0, levels = seed_size_and_levels(size)
        widths = level_channels(levels, base_channels, max_channels)  # s0 ... S/2
        self.size, self.latent_dim, self.seed_size = size, latent_dim, s0
        # Seed: a "1^3 image" with Z channels -> s0^3 by a transposed conv with kernel s0.
        self.seed = nn.Sequential(
            nn.ConvTranspose3d(latent_dim, widths[0], kernel_size=s0, bias=False),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=True),
        )
        ups: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            ups += [
                nn.ConvTranspose3d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.up = nn.Sequential(*ups)
        self.to_volume = nn.Sequential(
            nn.ConvTranspose3d(widths[-1], out_channels, kernel_size=4, stride=2, padding=1), nn.Tanh()
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCGAN initialisation: conv weights N(0, 0.02), biases 0; BatchNorm scale N(1, 0.02), shift 0."""
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose3d | nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Args:
            z: latent of shape (B, Z).

        Returns:
            volume of shape (B, out_channels, S, S, S), values in [-1, 1], axes (z, y, x).
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        x = self.seed(z[:, :, None, None, None])  # (B, C_0, s0, s0, s0)
        x = self.up(x)  # (B, base_channels, S/2, S/2, S/2)
        return self.to_volume(x)  # (B, out_channels, S, S, S)


class Discriminator3D(nn.Module):
    """DCGAN-style 3D discriminator: volume (B, 1, S, S, S) -> one logit per volume (B,).

    Args:
        size: input cube edge S, of the form ``s0 * 2^k`` with ``4 <= s0 <= 7``, ``k >= 1``.
        base_channels: width after the first strided convolution (edge S/2); deeper levels are wider.
        max_channels: cap on any level's width.
        in_channels: channels of the input volume (1 for CT).
    """

    def __init__(self, size: int, base_channels: int = 16, max_channels: int = 256, in_channels: int = 1) -> None:
        super().__init__()
        s0, levels = seed_size_and_levels(size)
        widths = [in_channels] + level_channels(levels, base_channels, max_channels)[::-1]  # S, S/2 ... s0
        self.size, self.in_channels = size, in_channels
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv3d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.to_logit = nn.Conv3d(widths[-1], 1, kernel_size=s0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCGAN initialisation: conv weights N(0, 0.02), biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: volumes of shape (B, in_channels, S, S, S) in [-1, 1].

        Returns:
            logits of shape (B,).
        """
        if x.ndim != 5 or tuple(x.shape[1:]) != (self.in_channels,) + (self.size,) * 3:
            raise ValueError(
                f"expected volumes of shape (B, {self.in_channels}, {self.size}, {self.size}, {self.size}), "
                f"got {tuple(x.shape)}"
            )
        h = self.features(x)  # (B, C_top, s0, s0, s0)
        return self.to_logit(h).flatten(1).squeeze(1)  # (B,)
