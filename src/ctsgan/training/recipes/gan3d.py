"""Training recipe for the 3D GAN baseline (placeholder until the shared trainer lands).

``bench_step`` builds one D + G training step for the memory benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def bench_step(
    size: int, g_base: int, d_base: int, max_channels: int, device: str, latent_dim: int = 128
) -> tuple[Callable[[], None], dict[str, int]]:
    """One training step (D update with R1, then G update; JS loss; batch 1) of the 3D GAN at ``size``."""
    from ctsgan.networks.gan3d import Discriminator3D, Generator3D

    g = Generator3D(size, latent_dim, g_base, max_channels).to(device)
    d = Discriminator3D(size, d_base, max_channels).to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.rand(1, 1, size, size, size, device=device) * 2 - 1

    def step() -> None:
        z = torch.randn(1, latent_dim, device=device)
        opt_d.zero_grad(set_to_none=True)
        x = real.clone().requires_grad_(True)
        real_logits = d(x)
        fake = g(z).detach()
        (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
        loss = F.softplus(-real_logits).mean() + F.softplus(d(fake)).mean() + 5.0 * grad.pow(2).sum()
        loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        F.softplus(-d(g(z))).mean().backward()
        opt_g.step()

    params = {"G": sum(p.numel() for p in g.parameters()), "D": sum(p.numel() for p in d.parameters())}
    return step, params


def ctsgan_bench_step(
    size: int, slices: int, g_base: int, d_base: int, max_channels: int, device: str
) -> tuple[Callable[[], None], dict[str, int]]:
    """CT-SGAN's one training step: comes with the shared trainer (branch ``ctsgan``)."""
    raise NotImplementedError("CT-SGAN training step not merged yet")
