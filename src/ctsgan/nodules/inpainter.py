"""Injector / eraser config, the inference wrapper :class:`Inpainter`, and shared VOI conditioning.

Both models are the same conditional inpainting GAN; they differ in what the generator sees:

- **injector**: the VOI with the mask sphere blanked (set to 0 in network units) + the mask; it
  learns to paint a nodule that fills the inner part of the mask (the mask radius is a function
  of the nodule diameter, so the diameter steers the size).
- **eraser**: the whole VOI, nodule included, + the mask; it learns to paint healthy tissue there.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from ctsgan.config import parse_choice
from ctsgan.data.hu import hu_to_unit, unit_to_hu
from ctsgan.losses.gan import GanLoss, Penalty
from ctsgan.nodules.networks import InpaintGenerator, PatchGAN3D, build_discriminator
from ctsgan.nodules.voi import ellipsoid_mask, mask_radius_vox
from ctsgan.training.recipe import TrainConfig

__all__ = [
    "InpaintConfig",
    "Inpainter",
    "InpainterKind",
    "build_generator",
    "condition_input",
    "load_inpainter",
    "parse_kind",
    "synthetic_nodule",
    "voi_masks",
]


class InpainterKind(StrEnum):
    INJECTOR = "injector"
    ERASER = "eraser"


def parse_kind(value: str) -> InpainterKind:
    """``"injector"`` / ``"eraser"`` -> :class:`InpainterKind`; anything else is a ValueError listing both."""
    return parse_choice(InpainterKind, str(value), "model")


class InpaintConfig(TrainConfig):
    """Injector / eraser training and inference settings (presets: ``configs/{injector,eraser}_*.yaml``).

    The shared training settings (steps, batch, learning rates, ``betas``, ``checkpoint_every``,
    ``hu_window``, ...) are :class:`ctsgan.training.recipe.TrainConfig`'s, with the inpainters'
    defaults below; the adversarial term is least squares (``loss: lsgan``) without a gradient
    penalty.
    """

    model: str = "injector"
    voi_size: int = 32
    g_channels: list[int] = [16, 32, 64, 128]
    g_strides: list[int] = [2, 2, 2]
    g_res_units: int = 1
    d_channels: int = 16
    d_layers: int = 3
    batch_size: int = Field(4, ge=1)
    steps: int = Field(2000, ge=1)
    loss: GanLoss = GanLoss.LSGAN
    penalty: Penalty = Penalty.NONE
    penalty_weight: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(200, ge=1)
    log_every: int = Field(20, ge=1)
    preview_every: int = Field(200, ge=0)
    w_nodule: float = 5.0
    w_boundary: float = 2.0
    w_context: float = 1.0
    w_adv: float = 0.05
    mask_scale: float = 1.3
    mask_margin_vox: float = 2.0
    blend_vox: float = 3.0
    split: str | None = "train"
    eraser_min_diameter_mm: float = 4.0
    eraser_max_diameter_mm: float = 16.0
    augment: bool = True
    inject_move_prob: float = 0.8
    threads: int = 0  # torch intra-op threads while training (0: torch's default)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return parse_kind(v).value

    @field_validator("hu_knots")
    @classmethod
    def _linear_hu(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if v:  # the HU-weighted losses (nodules.recipe: network units * half the window = HU) assume a linear map
            raise ValueError("hu_knots must be empty for the injector / eraser (their losses are in linear HU)")
        return v

    @field_validator("voi_size")
    @classmethod
    def _voi(cls, v: int) -> int:
        if v < 8 or v % 8:
            raise ValueError("voi_size must be a multiple of 8 and >= 8")
        return v

    @field_validator("split")
    @classmethod
    def _split(cls, v: str | None) -> str | None:
        if v not in (None, "train", "validation", "test"):
            raise ValueError("split must be train, validation, test or null (all)")
        return v

    def max_diameter_vox(self) -> float:
        """Largest nodule diameter (voxels) whose mask sphere still leaves a blend zone inside the VOI."""
        room = 0.5 * self.voi_size - self.blend_vox - 1.0 - self.mask_margin_vox
        return max(2.0 * room / self.mask_scale, 1.0)


def build_generator(cfg: InpaintConfig) -> InpaintGenerator:
    """The U-Net generator described by ``cfg``."""
    return InpaintGenerator(cfg.g_channels, cfg.g_strides, cfg.g_res_units)


def build_critic(cfg: InpaintConfig) -> PatchGAN3D:
    """The 3D PatchGAN discriminator described by ``cfg``."""
    return build_discriminator(cfg.d_channels, cfg.d_layers)


def voi_masks(
    size: int, diameter_mm: float, spacing_zyx: Sequence[float], mask_scale: float, mask_margin_vox: float
) -> tuple[np.ndarray, np.ndarray]:
    """(nodule sphere, mask sphere), both bool (S, S, S), centred in the VOI; radii per axis from spacing."""
    r_nod = tuple(0.5 * diameter_mm / float(s) for s in spacing_zyx)
    nodule = ellipsoid_mask(size, r_nod)
    mask = ellipsoid_mask(size, mask_radius_vox(diameter_mm, spacing_zyx, mask_scale, mask_margin_vox))
    return nodule, mask | nodule


def condition_input(kind: InpainterKind, voi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The generator's VOI input: masked centre (injector) or the whole VOI (eraser). (B, 1, S, S, S)."""
    if kind == InpainterKind.INJECTOR:
        return voi * (1 - mask)
    return voi


def synthetic_nodule(
    healthy_hu: np.ndarray, diameter_vox: Sequence[float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend a procedural solid nodule into the centre of a healthy VOI (eraser training pairs).

    The nodule is an ellipsoid (axes jittered +-15 %) with a lobulated, soft (~1 voxel) edge,
    soft-tissue density (N(20, 25) HU) and fine texture (sd 15 HU).

    Args:
        healthy_hu: (S, S, S) healthy VOI in HU.
        diameter_vox: nodule diameter per axis (z, y, x) in voxels.
        rng: numpy Generator.

    Returns:
        (VOI with the nodule as float32 HU (S, S, S), nodule opacity in [0, 1] (S, S, S)).
    """
    from scipy import ndimage as ndi

    size = healthy_hu.shape[0]
    c = size // 2 + rng.uniform(-0.5, 0.5, 3)
    radius = np.asarray(diameter_vox, dtype=np.float64) * 0.5 * rng.uniform(0.85, 1.15, 3)
    grids = np.ogrid[:size, :size, :size]
    r2 = sum(((g - cc) / max(rr, 0.5)) ** 2 for g, cc, rr in zip(grids, c, radius, strict=True))
    rnorm = np.sqrt(r2)
    lob = ndi.gaussian_filter(rng.normal(0, 1, healthy_hu.shape), 2.0)
    lob = lob / (np.abs(lob).max() + 1e-8) * 0.15
    edge = 1.0 / max(float(radius.mean()), 1.0)
    alpha = 1.0 / (1.0 + np.exp((rnorm - 1.0 - lob) / edge))
    tissue = rng.normal(20.0, 25.0) + ndi.gaussian_filter(rng.normal(0, 30.0, healthy_hu.shape), 0.7)
    out = healthy_hu.astype(np.float32) * (1 - alpha) + tissue.astype(np.float32) * alpha
    return out.astype(np.float32), alpha.astype(np.float32)


class Inpainter:
    """A trained injector or eraser generator, ready to fill VOIs.

    Args:
        generator: the trained :class:`InpaintGenerator`.
        config: its :class:`InpaintConfig`.
        device: torch device for inference.
    """

    def __init__(self, generator: InpaintGenerator, config: InpaintConfig, device: str | torch.device = "cpu") -> None:
        self.generator = generator.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.kind = parse_kind(config.model)

    @property
    def voi_size(self) -> int:
        return self.config.voi_size

    def masks(self, diameter_mm: float, spacing_zyx: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(nodule sphere, mask sphere) bool (S, S, S) for a nodule of ``diameter_mm``."""
        c = self.config
        return voi_masks(c.voi_size, diameter_mm, spacing_zyx, c.mask_scale, c.mask_margin_vox)

    @torch.no_grad()
    def __call__(self, vois_hu: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Fill VOIs.

        Args:
            vois_hu: (N, S, S, S) HU VOIs.
            masks: (N, S, S, S) bool masks (the region to fill).

        Returns:
            (N, S, S, S) int16 HU: the generator's whole output VOIs (blend them with
            :func:`ctsgan.nodules.paste.paste_voi`).
        """
        c = self.config
        if vois_hu.ndim != 4 or vois_hu.shape[1:] != (c.voi_size,) * 3 or masks.shape != vois_hu.shape:
            raise ValueError(
                f"expected VOIs and masks of shape (N, {c.voi_size}, {c.voi_size}, {c.voi_size}), "
                f"got {vois_hu.shape} and {masks.shape}"
            )
        x = torch.as_tensor(hu_to_unit(vois_hu, *c.hu_window))[:, None].to(self.device)  # (N, 1, S, S, S)
        m = torch.as_tensor(masks, dtype=torch.float32)[:, None].to(self.device)
        out = self.generator(condition_input(self.kind, x, m), m)
        return unit_to_hu(out[:, 0], *c.hu_window)


#: config keys of the inpainters' own loop (before they moved onto :mod:`ctsgan.training.loop`) -> today's
LEGACY_KEYS = {"ckpt_every": "checkpoint_every"}


def legacy_config(old: dict[str, Any]) -> dict[str, Any]:
    """An injector / eraser config dict from the inpainters' former loop, in today's keys
    (``beta1``/``beta2`` -> ``betas``, ``hu_min``/``hu_max`` -> ``hu_window``, ``ckpt_every`` ->
    ``checkpoint_every``). Its adversarial term was MONAI's least squares on LeakyReLU'd logits;
    the generator's weights load unchanged."""
    new = {LEGACY_KEYS.get(k, k): v for k, v in old.items() if k not in ("beta1", "beta2", "hu_min", "hu_max")}
    if "beta1" in old or "beta2" in old:
        new["betas"] = (old.get("beta1", 0.5), old.get("beta2", 0.999))
    if "hu_min" in old or "hu_max" in old:
        new["hu_window"] = (old.get("hu_min", -1024.0), old.get("hu_max", 600.0))
    return new


def _checkpoint_file(path: Path) -> Path:
    """A checkpoint file, or a run dir's newest (``checkpoints/step-*.pt``, else a former loop's ``latest.pt``)."""
    from ctsgan.training.checkpoint import latest_checkpoint

    if path.is_dir():
        found = latest_checkpoint(path) or (path / "checkpoints" / "latest.pt")
        if not found.exists():
            raise FileNotFoundError(f"{path}: no checkpoints; not an injector/eraser run dir (ctsgan nodules train)")
        return found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def load_inpainter(checkpoint: str | Path, device: str | torch.device = "cpu") -> Inpainter:
    """Load an injector / eraser checkpoint (written by ``ctsgan nodules train``).

    Args:
        checkpoint: ``RUN/checkpoints/step-*.pt`` or a run dir (its newest checkpoint). The EMA
            generator is used when the run kept one. Checkpoints of the inpainters' former loop
            (``step_XXXXXXX.pt`` / ``latest.pt``) load too (:func:`legacy_config`).
        device: where to run inference.
    """
    from ctsgan.training.checkpoint import CHECKPOINT_FORMAT, load_error_reason

    given = Path(checkpoint)
    path = _checkpoint_file(given)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({load_error_reason(e)})") from None
    kinds = [k.value for k in InpainterKind]
    try:
        if state.get("format") == CHECKPOINT_FORMAT:
            if state.get("model") not in kinds:
                what = "run dir, not an injector/eraser run dir" if given.is_dir() else \
                    "checkpoint from `ctsgan train`, not an injector/eraser"
                raise ValueError(f"{given}: a {state.get('model', 'GAN')} {what} (train one with `ctsgan nodules train`)")
            cfg = InpaintConfig.from_dict(state["config"], source=str(path))
            weights = state.get("generator_ema", state["generator"])
        else:
            cfg = InpaintConfig.from_dict(legacy_config(state["config"]), source=str(path))
            weights = state["generator"]
        gen = build_generator(cfg)
        gen.load_state_dict(weights)
    except (KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not an injector/eraser checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    return Inpainter(gen, cfg, device)
