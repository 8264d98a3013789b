"""A third model, registered from outside the package (``CTSGAN_RECIPE_MODULES=toy_recipe``): a
one-hidden-layer GAN on whole cubes. It exists to prove the recipe contract, not to make chests."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ctsgan.data.dataset import PreparedDataset
from ctsgan.losses.gan import discriminator_objective, g_loss
from ctsgan.training.recipe import GanNetworks, GanRecipe, RealSampler, TrainConfig
from ctsgan.training.recipes import register_recipe

BENCH_PRESET = Path(__file__).with_name("toy_bench.yaml")


class ToyConfig(TrainConfig):
    model: Literal["toy"] = "toy"
    size: int = Field(8, ge=2)
    latent_dim: int = Field(4, ge=1)
    g_width: int = Field(8, ge=1)
    d_width: int = Field(8, ge=1)
    max_width: int = Field(64, ge=1)


class ToyGenerator(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.size, self.latent_dim = cfg.size, cfg.latent_dim
        hidden = min(cfg.g_width, cfg.max_width)
        self.net = nn.Sequential(nn.Linear(cfg.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, cfg.size**3), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, self.size, self.size, self.size)


class ToySampler(RealSampler):
    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        vols = [self.volume(int(self.rng.integers(len(self.dataset)))) for _ in range(batch_size)]
        return {"volume": torch.stack([self.to_unit(v) for v in vols])[:, None]}


@register_recipe
class ToyRecipe(GanRecipe):
    name = "toy"
    config_cls = ToyConfig
    preset_prefix = "toy"
    width_fields = (("g_width",), ("d_width",), ("max_width",))
    bench_preset = str(BENCH_PRESET)

    def build_networks(self, config: TrainConfig) -> GanNetworks:
        assert isinstance(config, ToyConfig)
        d_hidden = min(config.d_width, config.max_width)
        disc = nn.Sequential(nn.Flatten(), nn.Linear(config.size**3, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, 1))
        return GanNetworks(ToyGenerator(config), disc)

    def make_sampler(self, config: TrainConfig, dataset: PreparedDataset, seed: tuple[int, ...]) -> RealSampler:
        return ToySampler(dataset, seed, config.hu_window)

    def _fake(self, gen: nn.Module, batch: int, noise: torch.Generator, device: torch.device) -> torch.Tensor:
        return gen(torch.randn(batch, gen.latent_dim, generator=noise).to(device))

    def d_step(self, nets, real, config, noise, *, penalty_weight):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            fake = self._fake(nets.generator, real["volume"].shape[0], noise, real["volume"].device)
        critic = lambda x: nets.discriminator(x).squeeze(1)  # noqa: E731
        return discriminator_objective(critic, real["volume"], fake, config.loss, config.penalty, penalty_weight, noise)

    def g_step(self, nets, batch_size, config, noise, *, real=None):  # type: ignore[no-untyped-def]
        fake = self._fake(nets.generator, batch_size, noise, next(nets.generator.parameters()).device)
        loss = g_loss(nets.discriminator(fake).squeeze(1), config.loss)
        return loss, {"g/adv": loss.detach()}

    def render(self, generator, config, seeds, device, options):  # type: ignore[no-untyped-def]
        if (options.slices not in (None, config.size)) or (options.size not in (None, config.size)):
            raise ValueError(f"toy makes {config.size}^3 cubes only")
        with torch.no_grad():
            return torch.stack([self._fake(generator, 1, torch.Generator().manual_seed(s), device)[0, 0] for s in seeds])
