"""The 3D GAN baseline recipe (``--model gan3d``): whole cubes in, whole cubes out.

Everything model-agnostic (data split, losses and penalties, optimizers, run dir, checkpoints,
resume, DDP, logging, previews) is the shared trainer's (:mod:`ctsgan.training`); this module
only says what a gan3d step is:

- real batch: ``volume`` (B, 1, S, S, S), whole training cubes drawn at random (memory-mapped);
- D phase: :func:`ctsgan.losses.gan.discriminator_objective` on real vs. ``G(z)`` cubes;
- G phase: the adversarial loss of ``D(G(z))``;
- :meth:`Gan3dRecipe.sample_volume`: ``G(z)`` for the seed's latent, optionally resampled to
  another edge (``size``) with trilinear interpolation, as the paper's baseline was trained at
  128^3 and upsampled to 224^3 for comparison.

Unlike CT-SGAN, a step's memory grows with S^3: every activation of G and D is a full cube.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ctsgan.data.dataset import PreparedDataset
from ctsgan.losses.gan import discriminator_objective, g_loss
from ctsgan.networks.common import fold_batchnorm
from ctsgan.networks.gan3d import Discriminator3D, Generator3D, seed_size_and_levels
from ctsgan.training.recipe import GanNetworks, GanRecipe, RealSampler, SampleOptions, TrainConfig
from ctsgan.training.recipes import register_recipe


class Gan3dConfig(TrainConfig):
    """3D GAN settings (presets: ``gan3d_tiny`` 16^3, ``gan3d_cpu32`` 32^3, ``gan3d_paper128`` 128^3).

    ``g_width`` / ``d_width`` are the base widths (finest hidden level of G, first level of D),
    doubling per coarser level up to ``g_max_width`` / ``d_max_width``: the same meaning as
    CT-SGAN's ``g_width`` / ``d_slice_width`` / ``d_slab_width``, so equal numbers mean equal widths.
    """

    model: Literal["gan3d"] = "gan3d"
    size: int = Field(32, ge=8)
    latent_dim: int = Field(128, ge=1)
    g_width: int = Field(16, ge=1)
    g_max_width: int = Field(256, ge=1)
    d_width: int = Field(16, ge=1)
    d_max_width: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check_geometry(self) -> Gan3dConfig:
        seed_size_and_levels(self.size)  # raises ValueError naming the size
        for base, cap, key in ((self.g_width, self.g_max_width, "g"), (self.d_width, self.d_max_width, "d")):
            if cap < base:
                raise ValueError(f"{key}_max_width ({cap}) must be >= {key}_width ({base})")
        return self



def build_generator(cfg: Gan3dConfig) -> Generator3D:
    """The 3D generator of ``cfg``: latent (B, latent_dim) -> (B, 1, S, S, S)."""
    return Generator3D(cfg.size, cfg.latent_dim, cfg.g_width, cfg.g_max_width)


def build_discriminator(cfg: Gan3dConfig) -> Discriminator3D:
    """The 3D discriminator of ``cfg``: (B, 1, S, S, S) -> logits (B,)."""
    return Discriminator3D(cfg.size, cfg.d_width, cfg.d_max_width)


def fold_batchnorm3d(generator: nn.Module) -> nn.Module:
    """An eval-mode copy of ``generator`` in which each (ConvTranspose3d, BatchNorm3d) pair of its
    ``nn.Sequential`` children becomes one ConvTranspose3d with the BatchNorm's affine map folded in."""
    import copy

    folded = copy.deepcopy(generator).eval()
    for name, block in list(folded.named_children()):
        if isinstance(block, nn.Sequential):
            setattr(folded, name, fold_batchnorm(block))
    return folded.requires_grad_(False)


class Gan3dSampler(RealSampler):
    """Whole real training cubes: ``sample(B)`` -> ``volume`` (B, 1, S, S, S) float32 in [-1, 1]."""

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        picks = self.rng.integers(len(self.dataset), size=batch_size)
        cubes = np.stack([np.asarray(self.volume(int(i))) for i in picks])  # (B, S, S, S) int16 HU
        return {"volume": self.to_unit(cubes)[:, None]}


def _latent(gen: nn.Module, batch: int, noise: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, latent_dim) Gaussian latents drawn on the CPU generator ``noise``, moved to ``device``."""
    g: Generator3D = gen.module if hasattr(gen, "module") else gen  # type: ignore[assignment]
    return torch.randn(batch, g.latent_dim, generator=noise).to(device)


@register_recipe
class Gan3dRecipe(GanRecipe[Gan3dConfig]):
    """Vanilla 3D DCGAN, the paper's baseline."""

    name = "gan3d"
    config_cls = Gan3dConfig
    preset_prefix = "gan3d"
    width_fields = (("g_width",), ("d_width",), ("g_max_width", "d_max_width"))
    bench_preset = "paper128"

    def check_dataset(self, config: Gan3dConfig, dataset: PreparedDataset) -> None:
        cfg = config
        if dataset.size != cfg.size:
            raise ValueError(
                f"{dataset.root}: volumes are {dataset.size}^3 but the gan3d config size is {cfg.size}; "
                f"prepare the data at --size {cfg.size} or pick a matching preset"
            )

    def build_networks(self, config: Gan3dConfig) -> GanNetworks:
        cfg = config
        return GanNetworks(build_generator(cfg), build_discriminator(cfg))

    def make_sampler(self, config: Gan3dConfig, dataset: PreparedDataset, seed: tuple[int, ...]) -> RealSampler:
        return Gan3dSampler(dataset, seed, config.hu_window, config.hu_knots)

    def d_step(
        self,
        nets: GanNetworks,
        real: dict[str, torch.Tensor],
        config: Gan3dConfig,
        noise: torch.Generator,
        *,
        penalty_weight: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = config
        volume = real["volume"]  # (B, 1, S, S, S)
        with torch.no_grad():
            fake = nets.generator(_latent(nets.generator, volume.shape[0], noise, volume.device))  # (B, 1, S, S, S)
        loss, scalars = discriminator_objective(
            nets.discriminator, volume, fake, cfg.loss, cfg.penalty, penalty_weight, noise
        )
        return loss, {f"d/{k}": v for k, v in scalars.items()}

    def g_step(
        self,
        nets: GanNetworks,
        batch_size: int,
        config: Gan3dConfig,
        noise: torch.Generator,
        *,
        real: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = config
        device = next(nets.generator.parameters()).device
        fake = nets.generator(_latent(nets.generator, batch_size, noise, device))  # (B, 1, S, S, S)
        loss = g_loss(nets.discriminator(fake), cfg.loss)
        return loss, {"g/adv": loss.detach()}

    def default_chunk(self, config: Gan3dConfig, device: torch.device) -> int:
        return 1  # one cube per generator call

    def inference_generator(self, generator: nn.Module) -> nn.Module:
        """A copy of the trained generator with every BatchNorm3d folded into the ConvTranspose3d
        before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``): same outputs up to float rounding."""
        return fold_batchnorm3d(generator)

    def bench_setup(self, size: int) -> tuple[Gan3dConfig, dict[str, Any]]:
        """The paper's baseline for ``ctsgan bench generate --model gan3d --size S``: the ``paper128``
        generator, its cubes resampled to S^3 (trilinear) when S != 128."""
        cfg = self.load_config("paper128")
        return cfg, ({} if size == cfg.size else {"size": size})

    def render(
        self, generator: nn.Module, config: Gan3dConfig, seeds: Sequence[int], device: torch.device, options: SampleOptions
    ) -> torch.Tensor:
        """One cube ``G(z_seed)`` per seed: (S, S, S), or (size, size, size) resampled trilinearly;
        float32 in [-1, 1] on the CPU. ``slices`` must be None or the output edge (cubes only)."""
        out_size = config.size if options.size is None else options.size
        if out_size < 1:
            raise ValueError(f"size must be >= 1, got {out_size}")
        if options.slices is not None and options.slices != out_size:
            raise ValueError(
                f"gan3d makes cubes: --slices must be left out or equal the edge ({out_size}); use --size to resample"
            )
        return torch.stack([self._cube(generator, config, seed, device, out_size, options.dtype) for seed in seeds])

    def _cube(
        self, generator: nn.Module, cfg: Gan3dConfig, seed: int, device: torch.device, out_size: int, dtype: torch.dtype
    ) -> torch.Tensor:
        z = _latent(generator, 1, torch.Generator().manual_seed(seed), device)
        use_autocast = dtype != torch.float32
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
            cube = generator(z).float()  # (1, 1, S, S, S)
            if out_size != cfg.size:
                cube = F.interpolate(cube, size=(out_size,) * 3, mode="trilinear", align_corners=False)
            cube = cube[0, 0].clamp(-1.0, 1.0).cpu()  # (size, size, size)
        return cube.clone()  # a normal tensor (not an inference-mode one) for the caller
