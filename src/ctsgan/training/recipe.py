"""The model-agnostic contract between the training loop and a GAN model ("recipe").

The loop in :mod:`ctsgan.training.loop` only schedules phases (D step, G step), optimizers,
checkpoints, logging, previews and DDP; everything model-specific lives in a :class:`GanRecipe`
subclass registered in :mod:`ctsgan.training.recipes`. See ``docs/ctsgan.md`` ("Adding a model").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from ctsgan.config import Config, resolve_config
from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT, Knots, check_knots, hu_to_unit
from ctsgan.losses.gan import GanLoss, Penalty


class TrainConfig(Config):
    """Settings every GAN recipe shares; a recipe's config class derives from this.

    ``steps`` counts G updates; each is preceded by ``d_steps`` D updates. ``batch_size`` is per
    process (the global batch under torchrun is ``batch_size * world_size``).
    """

    model: str
    seed: int = 0
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(2, ge=1)
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    loss: GanLoss = GanLoss.JS
    penalty: Penalty = Penalty.R1
    penalty_weight: float = Field(1.0, ge=0)
    d_steps: int = Field(1, ge=1)
    # lazy regularisation (StyleGAN2): the gradient penalty on every k-th D update only, weighted by k
    penalty_every: int = Field(1, ge=1)
    ema_beta: float = Field(0.0, ge=0.0, lt=1.0)  # EMA of G's weights for sampling (0: off; see training.loop)
    checkpoint_every: int = Field(500, ge=1)
    keep_last: int = Field(3, ge=1)
    log_every: int = Field(10, ge=1)
    preview_every: int = Field(500, ge=0)  # 0: only at the end
    preview_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    # structure metrics (z-profile error, z-variation and diversity ratios) of quality_volumes
    # volumes sampled every quality_every steps against the training volumes, logged as quality/*
    quality_every: int = Field(0, ge=0)  # 0: off
    quality_volumes: int = Field(8, ge=2)
    hu_window: tuple[float, float] = (HU_MIN_DEFAULT, HU_MAX_DEFAULT)
    # interior (HU, unit) knots of a piecewise-linear HU <-> [-1, 1] map (ctsgan.data.hu;
    # empty: linear over hu_window, the paper)
    hu_knots: list[tuple[float, float]] = Field(default_factory=list)
    # after training, fit the last checkpoint's HU calibration on this many generated volumes
    # (ctsgan.data.hu_calibration; generate applies it). false: the paper (raw generator HU)
    hu_calibration: bool = False
    hu_calibration_volumes: int = Field(16, ge=1)
    tensorboard: bool = True
    device: str = "auto"  # auto | cpu | cuda

    def penalty_weight_at(self, d_update: int) -> float:
        """The gradient-penalty weight of D update number ``d_update`` (0-based, counted over the
        run): ``penalty_weight * penalty_every`` on every ``penalty_every``-th update, else 0, so
        the penalty's average weight stays ``penalty_weight`` (StyleGAN2's lazy R1)."""
        return self.penalty_weight * self.penalty_every if d_update % self.penalty_every == 0 else 0.0

    @field_validator("hu_window")
    @classmethod
    def _window_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[1] <= v[0]:
            raise ValueError(f"hu_window must be (lo, hi) with hi > lo, got {v}")
        return v

    @model_validator(mode="after")
    def _knots_inside_window(self) -> TrainConfig:
        check_knots(*self.hu_window, self.hu_knots)  # raises ValueError naming the knots
        return self

    @field_validator("device")
    @classmethod
    def _device_known(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be one of ['auto', 'cpu', 'cuda'], got {v!r}")
        return v


C = TypeVar("C", bound=TrainConfig)  # a recipe's own config class


@dataclass(frozen=True)
class SampleOptions:
    """How :meth:`GanRecipe.render` makes volumes (each field as in :meth:`GanRecipe.sample_volumes`)."""

    slices: int | None = None
    size: int | None = None
    dtype: torch.dtype = torch.float32
    chunk: int | None = None


@dataclass
class GanNetworks:
    """The two trained modules. ``discriminator`` may hold several Ds (an ``nn.Module`` container)."""

    generator: nn.Module
    discriminator: nn.Module

    def to(self, device: torch.device | str) -> GanNetworks:
        self.generator.to(device)
        self.discriminator.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        self.generator.train(mode)
        self.discriminator.train(mode)


class RealSampler:
    """Random real training samples from a prepared dataset's train split (memory-mapped).

    Owns a numpy ``Generator`` (seeded per rank); its state is checkpointed, so resume draws
    the same samples as a run that never stopped. Subclasses implement :meth:`sample`.

    Args:
        dataset: the train split.
        seed: per-rank seed (e.g. ``(config.seed, rank)``).
        hu_window: HU window mapped onto [-1, 1].
        hu_knots: interior knots of that map (:mod:`ctsgan.data.hu`; empty: linear).
    """

    def __init__(
        self, dataset: PreparedDataset, seed: int | tuple[int, ...], hu_window: tuple[float, float], hu_knots: Knots = ()
    ) -> None:
        if len(dataset) == 0:
            raise ValueError(f"{dataset.root}: no training volumes (manifest has no 'train' rows with status ok)")
        self.dataset = dataset
        self.hu_window = hu_window
        self.hu_knots = tuple(hu_knots)
        self.rng = np.random.default_rng(np.random.SeedSequence(seed if isinstance(seed, int) else list(seed)))
        self._cache: dict[int, np.ndarray] = {}

    def volume(self, index: int) -> np.ndarray:
        """Memory-mapped int16 HU volume (S, S, S) of train row ``index``."""
        if index not in self._cache:
            self._cache[index] = self.dataset.load(index, mmap=True)
        return self._cache[index]

    def to_unit(self, hu: np.ndarray) -> torch.Tensor:
        """int16 HU array -> float32 tensor in [-1, 1] (same shape)."""
        return torch.from_numpy(np.ascontiguousarray(hu_to_unit(hu, *self.hu_window, self.hu_knots)))

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """One real batch as named CPU tensors (the recipe's D step knows the names)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


class GanRecipe(ABC, Generic[C]):
    """One GAN model: config, networks, real sampler, per-phase losses, volume sampling; generic in
    its config class ``C`` (``class CTSGANRecipe(GanRecipe[CTSGANConfig])``), so its methods receive
    their own config type.

    Class attributes:
        name: the ``--model`` name (``ctsgan``, ``gan3d``).
        config_cls: the typed config (derives from :class:`TrainConfig`).
        preset_prefix: presets are ``ctsgan/configs/<preset_prefix>_<preset>.yaml``.
    """

    name: ClassVar[str]
    config_cls: type[C]
    preset_prefix: ClassVar[str]
    #: config fields holding (the generator's base widths, every discriminator's base widths, the
    #: width caps), so a benchmark can give several models equal widths (``ctsgan bench memory``)
    width_fields: ClassVar[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = ((), (), ())
    #: the preset benchmarks start from (the paper's scale); None: the model has no benchmark preset
    bench_preset: ClassVar[str | None] = None
    #: whether :meth:`sample_volumes` makes whole volumes (False for models that edit given ones);
    #: only those can take quality snapshots during training (``quality_every``)
    generates_volumes: ClassVar[bool] = True

    def load_config(self, preset_or_path: str | Path) -> C:
        """A preset name (``tiny``) or YAML path -> validated config."""
        cfg = resolve_config(self.config_cls, str(preset_or_path), self.preset_prefix)
        if cfg.model != self.name:
            raise ValueError(f"config {preset_or_path}: model is {cfg.model!r}, expected {self.name!r}")
        return cfg

    def check_dataset(self, config: C, dataset: PreparedDataset) -> None:  # noqa: B027
        """Raise ValueError (naming the dataset) when it does not fit ``config`` (e.g. cube size)."""

    @abstractmethod
    def build_networks(self, config: C) -> GanNetworks:
        """Fresh generator and discriminator (on CPU; the loop moves them)."""

    def build_optimizers(self, nets: GanNetworks, config: C) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """(G optimizer, D optimizer); Adam with the config's learning rates and betas by default."""
        opt_g = torch.optim.Adam(nets.generator.parameters(), lr=config.lr_g, betas=config.betas)
        opt_d = torch.optim.Adam(nets.discriminator.parameters(), lr=config.lr_d, betas=config.betas)
        return opt_g, opt_d

    @abstractmethod
    def make_sampler(self, config: C, dataset: PreparedDataset, seed: tuple[int, ...]) -> RealSampler:
        """The real-batch sampler for this model."""

    @abstractmethod
    def d_step(
        self,
        nets: GanNetworks,
        real: dict[str, torch.Tensor],
        config: C,
        noise: torch.Generator,
        *,
        penalty_weight: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Discriminator loss (adversarial + penalty) on one real batch (already on the device).

        ``noise`` is a CPU generator: sample latents on it and move them to the device.
        ``penalty_weight`` is this update's gradient-penalty weight (the loop's lazy schedule,
        :meth:`TrainConfig.penalty_weight_at`; 0: skip the penalty and its cost).
        Returns (scalar loss, detached named scalars for logging).
        """

    @abstractmethod
    def g_step(
        self,
        nets: GanNetworks,
        batch_size: int,
        config: C,
        noise: torch.Generator,
        *,
        real: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generator loss for ``batch_size`` generated samples (D's parameters are frozen).

        ``real`` is the batch of this step's last D update (None outside the loop). A conditional
        model reads its inputs from it; a recipe whose :meth:`d_step` left its rendered samples
        there (with their graph, under a key of its own) may reuse them instead of rendering again.
        """

    def sample_volumes(
        self,
        generator: nn.Module,
        config: C,
        seeds: Sequence[int],
        device: torch.device,
        *,
        slices: int | None = None,
        size: int | None = None,
        dtype: torch.dtype = torch.float32,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """Volumes of several seeds, (B, D, H, W) float32 in [-1, 1], volume b fully determined by
        ``seeds[b]`` whatever the batch it is rendered in (up to float rounding where a recipe batches).

        The tensor may stay on ``device`` (callers convert with :func:`ctsgan.data.hu.unit_to_hu`
        or :func:`ctsgan.generation.generate.unit_to_hu_array`, which accept either).

        Args:
            generator: the trained generator (in eval mode).
            seeds: each volume's own seed; latents are drawn on a CPU generator seeded with it.
            slices: number of axial slices when the model can make longer volumes (else ValueError).
            size: output edge when the model can resample (else ValueError).
            dtype: compute dtype (``torch.bfloat16`` uses autocast on CUDA).
            chunk: how many 2D slices (or items) per generator call (memory / speed trade-off).
        """
        if not seeds:
            raise ValueError("sample_volumes needs at least one seed")
        return self.render(generator, config, [int(s) for s in seeds], device, SampleOptions(slices, size, dtype, chunk))

    def sample_volume(self, generator: nn.Module, config: C, seed: int, device: torch.device, **options: Any) -> torch.Tensor:
        """One volume (D, H, W): :meth:`sample_volumes` of ``[seed]``, with the same keyword options."""
        return self.sample_volumes(generator, config, [seed], device, **options)[0]

    @abstractmethod
    def render(
        self, generator: nn.Module, config: C, seeds: Sequence[int], device: torch.device, options: SampleOptions
    ) -> torch.Tensor:
        """The recipe's sampling: (B, D, H, W) float32 in [-1, 1], one volume per seed (see
        :meth:`sample_volumes`, which validates the seeds and bundles the options)."""

    def default_batch(self, config: C, device: torch.device) -> int:
        """Volumes per :meth:`sample_volumes` call when generating many (1: no batching)."""
        return 1

    def inference_generator(self, generator: nn.Module) -> nn.Module:
        """A copy of the trained generator optimised for sampling (e.g. BatchNorm folded); same outputs
        up to float rounding. Identity by default."""
        return generator

    def bench_setup(self, size: int) -> tuple[C, dict[str, Any]]:
        """For ``ctsgan bench generate --size size``: the paper-scale config and the
        :meth:`sample_volume` keyword arguments that make one size^3 volume."""
        raise NotImplementedError(f"model {self.name!r} does not define a generation benchmark")

    def default_chunk(self, config: C, device: torch.device) -> int:
        """Generator batch used by :meth:`sample_volume` when ``chunk`` is None."""
        return 32

    def bench_config(
        self,
        size: int,
        *,
        slices: int | None = None,
        widths: tuple[int, int, int] | None = None,
        batch_size: int = 1,
        device: str = "cpu",
    ) -> C:
        """The config of a benchmark step (``ctsgan bench memory``): :attr:`bench_preset` with the cube
        edge, ``widths`` = (G base, D base, cap) put in :attr:`width_fields`, the batch size and the
        device replaced; one D step, no TensorBoard. ``slices`` (a volume depth other than ``size``)
        only for models that have it (:meth:`resize_config`)."""
        if self.bench_preset is None:
            raise ValueError(f"model {self.name!r} has no benchmark preset (set bench_preset in its recipe)")
        data = self.load_config(self.bench_preset).model_dump()
        if widths is not None:
            for keys, value in zip(self.width_fields, widths, strict=True):
                data.update(dict.fromkeys(keys, value))
        data.update(batch_size=batch_size, d_steps=1, device=device, tensorboard=False)
        data.update(self.resize_config(data, size, slices))
        return self.config_cls.from_dict(data, source=f"{self.name} {self.bench_preset} at size {size}")

    def resize_config(self, data: dict[str, Any], size: int, slices: int | None) -> dict[str, Any]:
        """Config keys to change so that ``data`` (a config dict) trains on cubes of edge ``size``
        (and ``slices`` axial slices, when not None). Default: ``size`` only."""
        if slices is not None and slices != size:
            raise ValueError(f"model {self.name!r} trains on cubes: slices must equal size ({size}), got {slices}")
        return {"size": size}

    def train_split(self, config: C) -> str | None:
        """The prepared dataset's split the loop trains on (None: every split)."""
        return "train"

    def save_preview(
        self,
        generator: nn.Module,
        config: C,
        device: torch.device,
        path: Path,
        spacing_zyx: tuple[float, float, float],
        real: dict[str, torch.Tensor] | None,
    ) -> None:
        """Write the preview PNG at ``path`` (``generator`` is in eval mode; ``real`` is the last real
        batch, None before the first step). Default: one tri-planar row per ``config.preview_seeds``
        volume of :meth:`sample_volume`."""
        from ctsgan.data.hu import unit_to_hu
        from ctsgan.training.run_log import save_preview_grid

        vols = [unit_to_hu(self.sample_volume(generator, config, s, device), *config.hu_window, config.hu_knots)
                for s in config.preview_seeds]
        save_preview_grid(path, vols, spacing_zyx)
