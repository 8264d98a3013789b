"""Differentiable augmentation of discriminator inputs (Zhao et al. 2020, "DiffAugment").

With a handful of training volumes the discriminators memorise the real set and the generator
follows them into copies or a single mode. DiffAugment applies the same family of random,
differentiable transforms to every batch a discriminator sees, real and generated, in both the
D and the G phase, so D cannot key on exact pixels while G still gets gradients through the
transform. Only transforms that keep CT meaning are offered (no brightness or contrast: HU
levels are what the z-profile measures):

- ``translation``: each sample shifted in-plane by up to 1/8 of its edge, the gap filled with
  air (-1); all slices and channels of a sample move together, so slabs stay 3D-consistent;
- ``cutout``: each sample loses one square of half its edge (set to 0 in [-1, 1] units), the
  same square in every slice of the sample.

Random parameters come from the caller's CPU ``torch.Generator``, so a resumed run replays them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

POLICIES: tuple[str, ...] = ("translation", "cutout")


def _as_images(x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """(B, ..., H, W) -> (B, C', H, W) with every leading non-batch axis folded into channels."""
    if x.dim() < 3:
        raise ValueError(f"expected (B, ..., H, W), got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1]), x.shape


def translate(x: torch.Tensor, noise: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample of (B, ..., H, W) by integers in [-ratio*H, ratio*H] x [-ratio*W, ratio*W],
    filling with -1 (air). Differentiable in ``x``."""
    img, shape = _as_images(x)
    b, _, h, w = img.shape
    ry, rx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-ry, ry + 1, (b,), generator=noise).to(x.device)
    dx = torch.randint(-rx, rx + 1, (b,), generator=noise).to(x.device)
    padded = F.pad(img, (rx, rx, ry, ry), value=-1.0)  # (B, C', H + 2ry, W + 2rx)
    iy = torch.arange(h, device=x.device)[None] + ry - dy[:, None]  # (B, H): output row -> padded row
    ix = torch.arange(w, device=x.device)[None] + rx - dx[:, None]  # (B, W)
    rows = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[rows, iy[:, :, None], ix[:, None, :]]  # (B, H, W, C')
    return out.permute(0, 3, 1, 2).reshape(shape)


def cutout(x: torch.Tensor, noise: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Set one (ratio*H, ratio*W) square per sample of (B, ..., H, W) to 0, the same in every slice
    and channel of that sample. Differentiable in ``x`` (a mask product)."""
    img, shape = _as_images(x)
    b, _, h, w = img.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - sh % 2), (b,), generator=noise).to(x.device)
    cx = torch.randint(0, w + (1 - sw % 2), (b,), generator=noise).to(x.device)
    ys = torch.arange(h, device=x.device)[None] - cy[:, None] + sh // 2  # (B, H): row inside the square when in [0, sh)
    xs = torch.arange(w, device=x.device)[None] - cx[:, None] + sw // 2
    inside = ((ys >= 0) & (ys < sh))[:, :, None] & ((xs >= 0) & (xs < sw))[:, None, :]  # (B, H, W)
    mask = (~inside).to(x.dtype)[:, None]  # (B, 1, H, W)
    return (img * mask).reshape(shape)


def diff_augment(x: torch.Tensor, policy: Sequence[str], noise: torch.Generator) -> torch.Tensor:
    """Apply ``policy`` (names from :data:`POLICIES`, in order) to a batch (B, ..., H, W).

    An empty policy returns ``x`` itself and draws no random numbers.
    """
    for name in policy:
        if name == "translation":
            x = translate(x, noise)
        elif name == "cutout":
            x = cutout(x, noise)
        else:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(POLICIES)}")
    return x
