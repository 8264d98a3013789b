"""In-plane scale, rotation and smooth elastic warps of image stacks (one transform per sample
for all its slices).

Two users:

- training (``CTSGANConfig.real_scale`` / ``real_rotate_deg``, ``CTSGANSampler.augment``): the
  *real* samples are scaled in-plane (a wider or narrower, deeper or shallower chest) and rotated a
  little (patient roll on the table), so with a handful of scans the generator learns the
  patients' body-size variation rather than the patients themselves. Unlike DiffAugment
  (:mod:`ctsgan.training.diffaugment`), which transforms what the discriminators see, real and
  generated alike, this changes the distribution the generator learns. Each slab / 3-slice gets one
  transform for all its slices (slabs stay 3D-consistent); z is never touched (the discriminators
  are conditioned on z position). Parameters come from the sampler's checkpointed numpy
  ``Generator``; off (0 / 0) draws nothing.
- the memorisation check (:func:`ctsgan.metrics.structure.aligned_nearest_distances`): how close a
  generated volume comes to a *stretched or turned* training scan, so a scaled copy is still
  found to be a copy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def draw_affine(rng: np.random.Generator, n: int, scale: float, rotate_deg: float) -> np.ndarray:
    """``n`` random in-plane transforms as rows (scale_y, scale_x, angle in degrees).

    scale_y and scale_x are drawn independently from U[1 - scale, 1 + scale], the angle from
    U[-rotate_deg, rotate_deg].
    """
    u = rng.uniform(-1.0, 1.0, size=(n, 3))
    return np.stack([1.0 + scale * u[:, 0], 1.0 + scale * u[:, 1], rotate_deg * u[:, 2]], axis=1)


# control points per axis of the elastic warp: 4 x 4 over the image, so the warp bends body and
# lung outlines (a few centimetres across) and leaves fine texture to the bilinear resampling
ELASTIC_GRID = 4


def draw_elastic(rng: np.random.Generator, n: int, amplitude: float, grid: int = ELASTIC_GRID) -> np.ndarray:
    """``n`` random elastic warps as control-point displacements (n, 2, grid, grid), N(0, amplitude)
    in units of the image edge; channel 0 moves along x (columns), channel 1 along y (rows)."""
    return amplitude * rng.standard_normal((n, 2, grid, grid))


def elastic_displacement(offsets: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Control-point displacements from :func:`draw_elastic` -> a smooth (n, H, W, 2) field in
    ``grid_sample`` units (bicubic between the control points, which sit on the image corners and
    evenly between them): output pixel p is read from input p + d(p)."""
    d = torch.as_tensor(offsets, dtype=torch.float64) * 2.0  # edge fractions -> [-1, 1] units (an edge is 2)
    return F.interpolate(d, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)


def affine_inplane(
    x: torch.Tensor, params: np.ndarray, fill: float = -1.0, displacement: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale and rotate each sample of (B, C, H, W) about the image centre (bilinear), then warp it
    by ``displacement`` when given.

    Args:
        x: float images; all C channels (slices) of a sample get the sample's transform.
        params: (B, 3) rows (scale_y, scale_x, angle in degrees) as from :func:`draw_affine`;
            a scale above 1 enlarges the anatomy, a positive angle turns it counter-clockwise
            in array display (row 0 at the top).
        fill: value outside the input (air: -1 in [-1, 1] units).
        displacement: (B, H, W, 2) from :func:`elastic_displacement`, added to the affine sampling
            grid (None: no warp).

    Returns:
        (B, C, H, W), same dtype; rows (1, 1, 0) leave their sample unchanged up to float rounding.
    """
    if x.dim() != 4 or params.shape != (x.shape[0], 3):
        raise ValueError(f"expected x (B, C, H, W) and params (B, 3), got {tuple(x.shape)} and {params.shape}")
    p = torch.as_tensor(params, dtype=torch.float64)
    sy, sx, ang = p[:, 0], p[:, 1], p[:, 2] * (math.pi / 180.0)
    c, s = torch.cos(ang), torch.sin(ang)
    # affine_grid maps output (x, y) in [-1, 1] to input (x, y): the inverse of "scale then rotate";
    # the aspect ratio is folded in so a rotation of a non-square image stays a rotation
    h, w = x.shape[-2], x.shape[-1]
    theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = c / sx
    theta[:, 0, 1] = -s * h / (w * sx)
    theta[:, 1, 0] = s * w / (h * sy)
    theta[:, 1, 1] = c / sy
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    if displacement is not None:
        if displacement.shape != (x.shape[0], h, w, 2):
            raise ValueError(f"displacement must be {(x.shape[0], h, w, 2)}, got {tuple(displacement.shape)}")
        grid = grid + displacement.to(device=grid.device, dtype=grid.dtype)
    # grid_sample pads with zeros: sample x - fill and add fill back, so the outside is ``fill``
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
