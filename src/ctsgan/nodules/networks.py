"""Networks of the nodule injector / eraser (3D conditional inpainting GAN, after Jin et al. 2018).

- :class:`InpaintGenerator`: MONAI's residual 3D U-Net on (VOI, mask) -> VOI in [-1, 1] (tanh).
- :func:`build_discriminator`: MONAI's ``PatchDiscriminator`` (``spatial_dims=3``) on
  (candidate VOI, condition VOI, mask): one logit per 3D patch.

Both are plain ``nn.Module`` s with typed arguments; the objective lives in
:mod:`ctsgan.nodules.losses`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import PatchDiscriminator, UNet
from torch import nn

__all__ = ["InpaintGenerator", "PatchGAN3D", "build_discriminator"]


class InpaintGenerator(nn.Module):
    """3D U-Net that fills the masked part of a VOI.

    Args:
        channels: feature channels per U-Net level, e.g. (16, 32, 64, 128).
        strides: down-sampling stride between levels (len(channels) - 1 entries).
        num_res_units: residual units per block (MONAI ``UNet``).
        norm: normalisation layer name for MONAI (``"INSTANCE"``, ``"BATCH"``).
    """

    def __init__(
        self, channels: Sequence[int], strides: Sequence[int], num_res_units: int = 1, norm: str = "INSTANCE"
    ) -> None:
        super().__init__()
        if len(strides) != len(channels) - 1:
            raise ValueError(f"need len(strides) == len(channels) - 1, got {len(strides)} and {len(channels)}")
        self.unet = UNet(
            spatial_dims=3, in_channels=2, out_channels=1, channels=tuple(channels), strides=tuple(strides),
            num_res_units=num_res_units, norm=norm,
        )

    def forward(self, voi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args:
            voi: (B, 1, S, S, S) condition VOI in [-1, 1] (masked for the injector).
            mask: (B, 1, S, S, S) 1 inside the region to fill, 0 elsewhere.

        Returns:
            (B, 1, S, S, S) the whole generated VOI in [-1, 1].
        """
        x = torch.cat([voi, mask], dim=1)  # (B, 2, S, S, S)
        return torch.tanh(self.unet(x))


class PatchGAN3D(nn.Module):
    """3D PatchGAN discriminator on (candidate, condition, mask).

    Args:
        channels: features of the first layer (doubled per layer).
        num_layers: strided layers (3 for 32^3-64^3 VOIs, 2 for 16^3).
    """

    def __init__(self, channels: int = 16, num_layers: int = 3) -> None:
        super().__init__()
        self.net = PatchDiscriminator(
            spatial_dims=3, channels=channels, in_channels=3, out_channels=1, num_layers_d=num_layers,
            norm="INSTANCE",
        )

    def forward(self, candidate: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args:
            candidate: (B, 1, S, S, S) real or generated VOI in [-1, 1].
            condition: (B, 1, S, S, S) the generator's input VOI.
            mask: (B, 1, S, S, S) the inpainting mask.

        Returns:
            (B, 1, P, P, P) patch logits.
        """
        out = self.net(torch.cat([candidate, condition, mask], dim=1))  # list of features; last = logits
        return out[-1]


def build_discriminator(channels: int = 16, num_layers: int = 3) -> PatchGAN3D:
    """The 3D PatchGAN used by both the injector and the eraser."""
    return PatchGAN3D(channels=channels, num_layers=num_layers)
