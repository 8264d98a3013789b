"""The CT-SGAN recipe: config, real sampler, D / G phases and volume sampling.

Each training step renders only what the discriminators look at: for every volume in the batch,
R_v runs over all L = S - 2 positions (cheap), then G_slice renders one slab of T consecutive
3-slices (for D_slab, centre channels) and N single 3-slices at random positions (for D_slice),
all in one generator call of B * (T + N) 3-slices. Memory therefore depends on T and N, not on S.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import hu_to_unit
from ctsgan.data.inplane_affine import affine_inplane, draw_affine, draw_elastic, elastic_displacement
from ctsgan.losses.gan import LeCamAnchors, discriminator_objective, g_loss, g_loss_per_sample
from ctsgan.networks.ctsgan import (
    CTSGANDiscriminator,
    CTSGANGenerator,
    SlabDiscriminator,
    SliceDiscriminator,
    VolumeHead,
    fold_batchnorm,
    noise_volume_shape,
    smooth_noise_volume,
    three_slice_noise,
    upsampling_plan,
)
from ctsgan.training.diffaugment import diff_augment
from ctsgan.training.memorization import (
    closest_pair_thresholds,
    masked_mean,
    nearest_slab_distance,
    pool_inplane,
)
from ctsgan.training.recipe import GanNetworks, GanRecipe, RealSampler, SampleOptions, TrainConfig
from ctsgan.training.recipes import register_recipe


class CTSGANConfig(TrainConfig):
    """CT-SGAN settings (presets: ``ctsgan_tiny``, ``ctsgan_cpu64``, ``ctsgan_paper224``).

    ``size`` is the cube edge S of the prepared data; ``slab_depth`` T the number of consecutive
    centre slices D_slab sees; ``n_slices`` N the single 3-slices per volume D_slice sees.
    ``slices`` is the training volume depth L (None: S); a step still renders only T + N 3-slices.
    """

    model: Literal["ctsgan"] = "ctsgan"
    size: int = Field(64, ge=8)
    slab_depth: int = Field(8, ge=2)
    n_slices: int = Field(4, ge=1)
    patient_dim: int = Field(64, ge=1)
    noise_dim: int = Field(32, ge=1)
    rnn_hidden: int = Field(128, ge=1)
    slice_dim: int = Field(64, ge=1)
    g_width: int = Field(32, ge=1)
    g_max_width: int = Field(512, ge=1)
    d_slice_width: int = Field(32, ge=1)
    d_slice_max_width: int = Field(512, ge=1)
    d_slab_width: int = Field(16, ge=1)
    d_slab_max_width: int = Field(256, ge=1)
    slice_weight: float = Field(1.0, ge=0)
    slab_weight: float = Field(1.0, ge=0)
    slices: int | None = Field(None, ge=3)
    # Beyond the paper (0 / false = the paper; each measured in docs/fidelity.md):
    position_dim: int = Field(0, ge=0, multiple_of=2)  # Fourier features of relative z appended to G's input
    slab_position: bool = False  # D_slab conditioned on the slab's start position, as D_slice is on its slice's
    mbstd_group: int = Field(0, ge=0)  # minibatch-std feature in D_slice and D_slab (group size; 0: off)
    d_position_channels: int = Field(0, ge=0, multiple_of=2)  # position Fourier features as D input planes
    shared_positions: bool = False  # one slab start and one set of N slice positions per batch (all volumes)
    # diversity-sensitive G term (Yang et al. 2019): -w * min(|x_a - x_b| / |p_a - p_b|, cap) over pairs of
    # volumes' slices at the same positions (needs shared_positions); 0: off
    diversity_weight: float = Field(0.0, ge=0)
    diversity_cap: float = Field(0.1, gt=0)
    # G term: w x the L1 disagreement between neighbouring 3-slices of the training slab about the slices they
    # share (overlap_disagreement), so the volume is one 3D field and takes the 3-slices' own z-change; 0: off
    overlap_weight: float = Field(0.0, ge=0)
    # one G render per step (the PyTorch DCGAN example's schedule): the D phase renders its fakes with
    # their graph and the G phase, after D's update, scores those same fakes instead of new ones
    reuse_fakes: bool = False
    # G_slice's upsampling: MoCoGAN's transposed convolutions (the paper) or resize + 3x3 convolution
    g_upsample: Literal["transposed", "resize"] = "transposed"
    # a conv + BatchNorm + ReLU block at full resolution before G_slice's output conv (false: the paper)
    g_refine: bool = False
    # a noise volume per generated volume: G_slice adds a learned mix of the noise maps of its 3-slice's
    # slices at S/2 (StyleGAN's noise inputs, one 3D field along z; false: the paper)
    g_noise: bool = False
    # the noise volume smoothed by a Gaussian of (sigma_z slices, sigma_xy pixels at S/2) before use, so its detail
    # drifts along z over a few slices instead of changing on every slice; (0, 0): white (needs g_noise otherwise)
    g_noise_smooth: tuple[float, float] = (0.0, 0.0)
    # G_slice also gets the slice codes of the neighbouring 3-slices (k - 1, k + 1): the change inside a 3-slice
    # can then come from how R_v's codes change along z (false: the paper, one code per 3-slice)
    neighbour_codes: bool = False
    # a residual 3D conv head of this width over the assembled volume (networks.ctsgan.VolumeHead): each
    # slice corrected from 3 slices either side, so structures can move between slices; D_slab judges
    # it (its slab rendered with 3 extra 3-slices of context each side; D_slice sees G_slice alone); 0: the paper
    g_head: int = Field(0, ge=0)
    # extra CT windows (lo, hi) in HU that both Ds see beside the full window (empty: the paper)
    d_windows: list[tuple[float, float]] = Field(default_factory=list)
    # D_slice also scores the slice's reduced power spectrum (SSD-GAN, Chen et al. 2021; false: the paper)
    d_spectral: bool = False
    # D_slab also scores the slab's z-structure spectrum: the power of slice differences per slice distance
    # and in-plane frequency (networks.ctsgan.z_structure_spectrum; false: the paper)
    d_slab_spectral: bool = False
    # DiffAugment (Zhao et al. 2020) on every D input, real and generated (empty: the paper)
    augment: list[Literal["translation", "cutout"]] = Field(default_factory=list)
    # LeCam regulariser on both Ds (Tseng et al. 2021, for limited data; 0: the paper) and its anchors' EMA decay
    lecam_weight: float = Field(0.0, ge=0)
    lecam_decay: float = Field(0.99, ge=0, lt=1)
    # in-plane scaling (each axis by U[1 - s, 1 + s]) and rotation (U[-r, r] degrees) of every REAL sample,
    # one transform per slab / 3-slice (data/inplane_affine.py): G learns the patients' body-size
    # variation instead of the patients themselves (0 / 0: the paper; measured in docs/real_chest.md)
    real_scale: float = Field(0.0, ge=0, lt=0.5)
    real_rotate_deg: float = Field(0.0, ge=0, le=45)
    # and a smooth elastic warp of every REAL sample: 4 x 4 control points moved by N(0, e) image
    # edges, bicubic between them (0: none; 0.03 at 64^3 moves outlines by ~1 cm)
    real_elastic: float = Field(0.0, ge=0, le=0.1)
    # memorization rejection (Bai et al. 2022; training/memorization.py), for a handful of scans: a generated slab
    # closer to some training volume's slab at its position than this x the training volumes' closest pair there
    # is left out of G's adversarial loss (0: off, the paper). Every training volume is held in memory at half
    # resolution in-plane (11 MB per 224^3 volume).
    memorization_threshold: float = Field(0.0, ge=0)
    # and such a slab is pushed away: w x mean(relu(1 - distance / threshold)) added to G's loss (0: reject only)
    memorization_repel: float = Field(0.0, ge=0)
    # false: near-copies stay in G's adversarial loss and are only pushed away (needs memorization_repel > 0)
    memorization_reject: bool = True

    @property
    def depth(self) -> int:
        """Axial slices L of a training volume (``slices``, else S)."""
        return self.size if self.slices is None else self.slices

    @model_validator(mode="after")
    def _check_geometry(self) -> CTSGANConfig:
        upsampling_plan(self.size)  # raises ValueError naming the size
        if min(self.g_noise_smooth) < 0 or (max(self.g_noise_smooth) > 0 and not self.g_noise):
            raise ValueError(f"g_noise_smooth {self.g_noise_smooth} must be >= 0 and needs g_noise: true")
        if self.diversity_weight > 0 and not self.shared_positions:
            raise ValueError("diversity_weight > 0 compares volumes at the same positions: set shared_positions: true")
        for lo, hi in self.d_windows:
            if not (hi > lo and hi > self.hu_window[0] and lo < self.hu_window[1]):
                raise ValueError(f"d_windows entry ({lo}, {hi}) must have hi > lo and overlap hu_window {self.hu_window}")
        if self.memorization_repel > 0 and self.memorization_threshold == 0:
            raise ValueError("memorization_repel > 0 pushes slabs away from a threshold: set memorization_threshold > 0")
        if not self.memorization_reject and self.memorization_repel == 0:
            raise ValueError("memorization_reject: false leaves only the repel term: set memorization_repel > 0")
        if self.slab_depth > self.depth - 2:
            raise ValueError(f"slab_depth ({self.slab_depth}) must be <= slices - 2 ({self.depth - 2})")
        return self


#: the largest training split memorization rejection takes (its pair table grows as V^2, its memory as V)
MEMORIZATION_MAX_VOLUMES = 64


class CTSGANSampler(RealSampler):
    """Real slabs and 3-slices at random positions of random training volumes.

    ``sample(B)`` returns ``slab`` (B, 1, T, S, S) (centre slices k0+1 .. k0+T of a volume, i.e.
    the centre channels of 3-slices k0 .. k0+T-1) with ``slab_positions`` (B,) = k0, ``slices``
    (B*N, 3, S, S) and their 3-slice ``positions`` (B*N,) int64 in [0, S - 2).
    """

    def __init__(self, dataset: PreparedDataset, seed: tuple[int, ...], config: CTSGANConfig) -> None:
        super().__init__(dataset, seed, config.hu_window, config.hu_knots)
        self.size = config.size
        self.n_pos = config.depth - 2
        self.depth = config.slab_depth
        self.n_slices = config.n_slices
        self.shared = config.shared_positions
        self.real_scale = config.real_scale
        self.real_rotate_deg = config.real_rotate_deg
        self.real_elastic = config.real_elastic
        self.memo_ref: torch.Tensor | None = None
        self.memo_tau: torch.Tensor | None = None
        if config.memorization_threshold > 0:  # every training volume, pooled, and each slab start's threshold
            if len(dataset) > MEMORIZATION_MAX_VOLUMES:
                raise ValueError(
                    f"{dataset.root}: memorization_threshold compares every slab with every training volume and holds them "
                    f"all in memory: for training sets of at most {MEMORIZATION_MAX_VOLUMES} volumes, this one has {len(dataset)}"
                )
            self.memo_ref = pool_inplane(torch.stack([self.to_unit(self.volume(i)) for i in range(len(dataset))]))
            self.memo_tau = config.memorization_threshold * closest_pair_thresholds(self.memo_ref, self.depth)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        n_pos = self.n_pos
        n_vol = len(self.dataset)
        slabs, slices, positions, starts = [], [], [], []
        if self.shared:  # one slab start, one set of slice positions for the whole batch
            k0_shared = int(self.rng.integers(0, n_pos - self.depth + 1))
            ks_shared = [int(k) for k in self.rng.integers(0, n_pos, self.n_slices)]
        for _ in range(batch_size):
            vol = self.volume(int(self.rng.integers(n_vol)))
            k0 = k0_shared if self.shared else int(self.rng.integers(0, n_pos - self.depth + 1))
            slabs.append(vol[k0 + 1 : k0 + 1 + self.depth])
            starts.append(k0)
            for j in range(self.n_slices):
                v = self.volume(int(self.rng.integers(n_vol)))
                k = ks_shared[j] if self.shared else int(self.rng.integers(0, n_pos))
                slices.append(v[k : k + 3])
                positions.append(k)
        batch = {
            "slab": self.augment(self.to_unit(_stack(slabs)))[:, None],  # (B, 1, T, S, S)
            "slices": self.augment(self.to_unit(_stack(slices))),  # (B*N, 3, S, S)
            "positions": torch.tensor(positions, dtype=torch.int64),  # (B*N,)
            "slab_positions": torch.tensor(starts, dtype=torch.int64),  # (B,) 3-slice index k0 of each slab
        }
        if self.memo_ref is not None and self.memo_tau is not None:  # the training slabs at each row's position
            batch["memo_ref"] = torch.stack([self.memo_ref[:, k0 + 1 : k0 + 1 + self.depth] for k0 in starts])  # (B, V, T, R, R)
            batch["memo_tau"] = self.memo_tau[starts]  # (B,)
        return batch

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Real samples (B, C, S, S) in [-1, 1] under random in-plane scale / rotation, then an elastic
        warp, one of each per sample (``real_scale`` / ``real_rotate_deg`` / ``real_elastic``, drawn in
        that order); all 0: ``x`` itself, no random numbers drawn."""
        if self.real_scale == 0 and self.real_rotate_deg == 0 and self.real_elastic == 0:
            return x
        params = draw_affine(self.rng, x.shape[0], self.real_scale, self.real_rotate_deg)
        warp = None
        if self.real_elastic > 0:
            warp = elastic_displacement(draw_elastic(self.rng, x.shape[0], self.real_elastic), x.shape[-2], x.shape[-1])
        return affine_inplane(x, params, displacement=warp)


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack int16 HU arrays (memory-mapped views) into one in-memory array."""
    return np.stack([np.asarray(a) for a in arrays])


def _latents(
    gen: nn.Module, batch: int, length: int, noise: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(patient (B, P), eps (B, L, E), h0 (2, B, H), noise volumes (B, L + 2, S/2, S/2) or None
    without ``g_noise``) drawn on the CPU generator in that order, moved to ``device``."""
    g: CTSGANGenerator = gen.module if hasattr(gen, "module") else gen  # type: ignore[assignment]
    patient = torch.randn(batch, g.patient_dim, generator=noise)
    eps = torch.randn(batch, length, g.noise_dim, generator=noise)
    h0 = torch.randn(2, batch, g.rnn_hidden, generator=noise)
    shape = noise_volume_shape(g, length + 2)
    field = None if shape is None else torch.randn(batch, *shape, generator=noise).to(device)
    if field is not None and max(g.noise_smooth) > 0:
        field = smooth_noise_volume(field, *g.noise_smooth)
    return patient.to(device), eps.to(device), h0.to(device), field


def render_training_views(
    gen: CTSGANGenerator,
    config: CTSGANConfig,
    batch: int,
    noise: torch.Generator,
    device: torch.device,
    positions: torch.Tensor | None = None,
    slab_positions: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Generated slabs and single 3-slices for one training step (the memory trick).

    Args:
        positions: (B*N,) 3-slice positions to render single slices at (e.g. the real batch's,
            so D_slice compares real and fake at the same positions); random when None.
        slab_positions: (B,) slab starts k0 (e.g. the real batch's); random when None.

    Returns:
        ``slab`` (B, 1, T, S, S), ``slab_three`` (B, T, 3, S, S) (the slab's whole 3-slices),
        ``slab_positions`` (B,), ``slices`` (B*N, 3, S, S), ``positions`` (B*N,) on ``device``.
    """
    n_pos, t, n = config.depth - 2, config.slab_depth, config.n_slices
    patient, eps, h0, field = _latents(gen, batch, n_pos, noise, device)
    codes = gen.codes(patient, eps, h0)  # (B, L, C)
    if config.shared_positions:  # one slab start and one set of N positions, shared by the batch
        k0 = torch.randint(0, n_pos - t + 1, (1,), generator=noise).repeat(batch)
    else:
        k0 = torch.randint(0, n_pos - t + 1, (batch,), generator=noise)
    if slab_positions is not None:
        k0 = slab_positions.cpu()
    if positions is None:
        if config.shared_positions:
            positions = torch.randint(0, n_pos, (n,), generator=noise).repeat(batch)  # (B*N,): b*N + j -> position j
        else:
            positions = torch.randint(0, n_pos, (batch * n,), generator=noise)
    positions = positions.to(device)
    rows = torch.arange(batch, device=device)[:, None]
    head: VolumeHead | None = getattr(gen, "head", None)
    r = 0 if head is None else head.context  # context slices either side of the slab for the 3D head
    # volume slice indices k0+1-r .. k0+T+r, held inside the volume as replicate padding holds them
    slab_slice = (k0.to(device)[:, None] + 1 - r + torch.arange(t + 2 * r, device=device)[None]).clamp(0, n_pos + 1)
    slab_idx = (slab_slice - 1).clamp(0, n_pos - 1)  # (B, T + 2r): the 3-slice whose slice that is
    tr = t + 2 * r
    slab_codes = codes[rows, slab_idx].reshape(batch * tr, -1)  # (B*(T+2r), C)
    slice_codes = codes[rows, positions.view(batch, n)].reshape(batch * n, -1)  # (B*N, C)
    maps = None
    if field is not None:  # each 3-slice gets its slices' maps of its volume's noise volume, rows as above
        vol = torch.cat([rows.expand(batch, tr).reshape(-1), rows.expand(batch, n).reshape(-1)])  # (B*(T+2r+N),)
        maps = three_slice_noise(field, vol, torch.cat([slab_idx.reshape(-1), positions]))  # (B*(T+2r+N), 3, R, R)
    out = gen(torch.cat([slab_codes, slice_codes], dim=0), maps)  # (B*(T+2r+N), 3, S, S)
    s = config.size
    ext = out[: batch * tr].reshape(batch, tr, 3, s, s)
    three = ext[:, r : r + t]  # (B, T, 3, S, S): the slab's own 3-slices (never clamped)
    slab = three[:, None, :, 1]  # (B, 1, T, S, S)
    if head is not None:  # the volume's end slices are outer channels of its end 3-slices, as render_volumes writes them
        chan = torch.where(slab_slice == 0, 0, torch.where(slab_slice == n_pos + 1, 2, 1))  # (B, T + 2r)
        slices = ext.gather(2, chan[:, :, None, None, None].expand(-1, -1, 1, s, s))[:, :, 0]  # (B, T + 2r, S, S)
        slab = head(slices[:, None])[:, :, r : r + t]
    return {"slab": slab, "slab_three": three, "slab_positions": k0.to(device),
            "slices": out[batch * tr :], "positions": positions, "patient": patient}


def overlap_disagreement(three: torch.Tensor) -> torch.Tensor:
    """How much consecutive 3-slices disagree about the slices they share.

    3-slice k renders slices k, k + 1, k + 2, so slice k + 2 is drawn three times: as channel 2 of
    3-slice k, channel 1 of k + 1 and channel 0 of k + 2; the volume keeps only the centre channels.
    The mean absolute difference of each pair (k's channel 2 vs k + 1's channel 1, k + 1's
    channel 0 vs k's channel 1, and, when T >= 3, k's channel 2 vs k + 2's channel 0), averaged.

    Args:
        three: (B, T, 3, S, S) consecutive 3-slices, T >= 2.

    Returns:
        scalar (0: the 3-slices are windows of one volume).
    """
    pairs = [(three[:, :-1, 2], three[:, 1:, 1]), (three[:, 1:, 0], three[:, :-1, 1])]
    if three.shape[1] >= 3:
        pairs.append((three[:, :-2, 2], three[:, 2:, 0]))
    return torch.stack([(a - b).abs().mean() for a, b in pairs]).mean()


def diversity_ratio(slabs: torch.Tensor, patient: torch.Tensor) -> torch.Tensor:
    """Mean over volume pairs (0, 1), (2, 3), ... of |slab_a - slab_b| / |p_a - p_b| (means of absolute values).

    Args:
        slabs: (B, 1, T, S, S) slabs of B volumes at the same positions.
        patient: (B, P) their patient codes.

    Returns:
        scalar: how much the images move per unit of patient-code change (0: G ignores its code).
    """
    n = slabs.shape[0] // 2 * 2
    a, b = slabs[0:n:2], slabs[1:n:2]  # (B/2, 1, T, S, S)
    num = (a - b).abs().flatten(1).mean(1)  # (B/2,)
    den = (patient[0:n:2] - patient[1:n:2]).abs().mean(1).to(num.device)  # (B/2,)
    return (num / den.clamp(min=1e-6)).mean()


#: with ``reuse_fakes``, ``d_step`` leaves its rendered views in the batch under this prefix for ``g_step``
REUSED_PREFIX = "reused_fake/"


@register_recipe
class CTSGANRecipe(GanRecipe[CTSGANConfig]):
    """CT-SGAN (Pesaranghader et al. 2021)."""

    name = "ctsgan"
    config_cls = CTSGANConfig
    preset_prefix = "ctsgan"
    width_fields = (("g_width",), ("d_slice_width", "d_slab_width"), ("g_max_width", "d_slice_max_width", "d_slab_max_width"))
    bench_preset = "paper224"

    def check_dataset(self, config: CTSGANConfig, dataset: PreparedDataset) -> None:
        cfg = config
        if dataset.size != cfg.size:
            raise ValueError(f"{dataset.root}: volumes are {dataset.size}^3 but config size is {cfg.size}")
        if len(dataset) and dataset.load(0).shape[0] != cfg.depth:
            raise ValueError(f"{dataset.root}: volumes have {dataset.load(0).shape[0]} slices but config slices is {cfg.depth}")

    def build_networks(self, config: CTSGANConfig) -> GanNetworks:
        return GanNetworks(build_generator(config), build_discriminator(config))

    def make_sampler(self, config: CTSGANConfig, dataset: PreparedDataset, seed: tuple[int, ...]) -> RealSampler:
        return CTSGANSampler(dataset, seed, config)

    def d_step(
        self,
        nets: GanNetworks,
        real: dict[str, torch.Tensor],
        config: CTSGANConfig,
        noise: torch.Generator,
        *,
        penalty_weight: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = config
        d: CTSGANDiscriminator = nets.discriminator  # type: ignore[assignment]
        batch = real["slab"].shape[0]
        with torch.set_grad_enabled(cfg.reuse_fakes):
            fake = render_training_views(
                nets.generator, cfg, batch, noise, real["slab"].device,  # type: ignore[arg-type]
                positions=real["positions"], slab_positions=real["slab_positions"],
            )
        if cfg.reuse_fakes:  # for g_step, with their graph
            real.update({REUSED_PREFIX + k: v for k, v in fake.items()})
        pos, slab_pos = real["positions"], real["slab_positions"]
        aug = cfg.augment
        loss_slice, s_slice = discriminator_objective(
            lambda x: d.d_slice(diff_augment(x, aug, noise), pos), real["slices"], fake["slices"],
            cfg.loss, cfg.penalty, penalty_weight, noise, d.lecam_slice, cfg.lecam_weight,  # type: ignore[arg-type]
        )
        loss_slab, s_slab = discriminator_objective(
            lambda x: d.d_slab(diff_augment(x, aug, noise), slab_pos), real["slab"], fake["slab"],
            cfg.loss, cfg.penalty, penalty_weight, noise, d.lecam_slab, cfg.lecam_weight,  # type: ignore[arg-type]
        )
        total = cfg.slice_weight * loss_slice + cfg.slab_weight * loss_slab
        scalars = {f"d_slice/{k}": v for k, v in s_slice.items()} | {f"d_slab/{k}": v for k, v in s_slab.items()}
        return total, scalars

    def g_step(
        self,
        nets: GanNetworks,
        batch_size: int,
        config: CTSGANConfig,
        noise: torch.Generator,
        *,
        real: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = config
        d: CTSGANDiscriminator = nets.discriminator  # type: ignore[assignment]
        device = next(nets.generator.parameters()).device
        reused = [k for k in real if k.startswith(REUSED_PREFIX)] if (cfg.reuse_fakes and real is not None) else []
        memo = real is not None and "memo_ref" in real  # memorization rejection: fakes at the real batch's slabs
        if reused:
            assert real is not None
            fake = {k.removeprefix(REUSED_PREFIX): real.pop(k) for k in reused}
        else:
            slab_positions = real["slab_positions"] if memo and real is not None else None
            fake = render_training_views(nets.generator, cfg, batch_size, noise, device, slab_positions=slab_positions)  # type: ignore[arg-type]
        slice_logits = d.d_slice(diff_augment(fake["slices"], cfg.augment, noise), fake["positions"])
        slab_logits = d.d_slab(diff_augment(fake["slab"], cfg.augment, noise), fake["slab_positions"])
        scalars: dict[str, torch.Tensor] = {}
        if memo:
            assert real is not None
            dist = nearest_slab_distance(fake["slab"][:, 0], real["memo_ref"])  # (B,)
            ratio = dist / real["memo_tau"]
            keep = ratio.detach() >= 1  # near-copies leave G's adversarial loss (the slab and its volume's slices)
            memorized = 1 - keep.float().mean()
            if not cfg.memorization_reject:
                keep = torch.ones_like(keep)
            n_per = fake["slices"].shape[0] // keep.shape[0]
            l_slice = masked_mean(g_loss_per_sample(slice_logits, cfg.loss), keep.repeat_interleave(n_per))
            l_slab = masked_mean(g_loss_per_sample(slab_logits, cfg.loss), keep)
            scalars |= {"g/memorized": memorized, "g/nearest_ratio": ratio.detach().mean()}
        else:
            l_slice, l_slab = g_loss(slice_logits, cfg.loss), g_loss(slab_logits, cfg.loss)
        total = cfg.slice_weight * l_slice + cfg.slab_weight * l_slab
        scalars |= {"g/slice": l_slice.detach(), "g/slab": l_slab.detach()}
        if memo and cfg.memorization_repel > 0:
            repel = (1 - ratio).clamp(min=0).mean()
            total = total + cfg.memorization_repel * repel
            scalars["g/repel"] = repel.detach()
        if cfg.diversity_weight > 0 and batch_size >= 2:
            ratio = diversity_ratio(fake["slab"], fake["patient"])
            total = total - cfg.diversity_weight * ratio.clamp(max=cfg.diversity_cap)
            scalars["g/diversity"] = ratio.detach()
        if cfg.overlap_weight > 0:
            overlap = overlap_disagreement(fake["slab_three"])
            total = total + cfg.overlap_weight * overlap
            scalars["g/overlap"] = overlap.detach()
        return total, scalars

    def inference_generator(self, generator: nn.Module) -> nn.Module:
        g: CTSGANGenerator = generator  # type: ignore[assignment]
        fast = CTSGANGenerator.__new__(CTSGANGenerator)
        nn.Module.__init__(fast)
        fast.size, fast.patient_dim, fast.noise_dim, fast.rnn_hidden = g.size, g.patient_dim, g.noise_dim, g.rnn_hidden
        fast.position_dim, fast.noise_smooth, fast.neighbour_codes = g.position_dim, g.noise_smooth, g.neighbour_codes
        fast.rv = g.rv
        fast.g_slice = fold_batchnorm(g.g_slice)
        fast.head = g.head
        return fast.eval()

    def resize_config(self, data: dict[str, Any], size: int, slices: int | None) -> dict[str, Any]:
        """Size S and depth (``slices``; None: S); the slab depth capped at S - 2 for small S."""
        depth = size if slices is None else slices
        return {"size": size, "slab_depth": min(int(data["slab_depth"]), depth - 2), "slices": None if depth == size else depth}

    def bench_setup(self, size: int) -> tuple[CTSGANConfig, dict[str, Any]]:
        cfg = self.load_config("paper224")
        if size != cfg.size:
            data = cfg.model_dump()
            cfg = CTSGANConfig.from_dict({**data, **self.resize_config(data, size, None)}, source=f"paper224 at size {size}")
        return cfg, {}

    def default_chunk(self, config: CTSGANConfig, device: torch.device) -> int:
        # ~2 MB of activations per 224^2 3-slice in fp32: 32 on CPU keeps caches warm. H200, bf16,
        # inference G_slice at 224^2: 3.26 / 2.40 / 2.16 ms per volume's 222 3-slices in calls of
        # 128 / 512 / 2048 (benchmarks/gpu_generate_profile.py): 512 takes most of the gain.
        return 512 if device.type == "cuda" else 32

    def render(
        self, generator: nn.Module, config: CTSGANConfig, seeds: Sequence[int], device: torch.device, options: SampleOptions
    ) -> torch.Tensor:
        """One volume: :func:`render_volume` in ``default_chunk`` calls; several: R_v over all of
        them at once and G_slice calls of ``batched_chunk`` 3-slices across volume boundaries."""
        n_slices = _volume_depth(config, options.slices, options.size)
        noises = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        if len(seeds) == 1:  # the batch-1 path
            chunk = options.chunk or self.default_chunk(config, device)
            return render_volume(generator, n_slices, noises[0], device, dtype=options.dtype, chunk=chunk)[None]  # type: ignore[arg-type]
        chunk = options.chunk or self.batched_chunk(config, device)
        return render_volumes(generator, n_slices, noises, device, dtype=options.dtype, chunk=chunk)  # type: ignore[arg-type]

    def batched_chunk(self, config: CTSGANConfig, device: torch.device) -> int:
        """3-slices per G_slice call when several volumes are rendered together.

        CPU: the same activation bytes per call as 32 3-slices at 224^2 (so 392 at 64^2, capped at
        256): at 64^3 one volume has only 62 3-slices, and calls of 128-256 ran 1.5x faster than
        calls of 32 (measured, docs/ctsgan.md). CUDA: :meth:`default_chunk`.
        """
        cfg = config
        if device.type == "cuda":
            return self.default_chunk(cfg, device)
        return int(max(32, min(256, 32 * (224 / cfg.size) ** 2)))

    def default_batch(self, config: CTSGANConfig, device: torch.device) -> int:
        # CPU: enough volumes for two full G calls of batched_chunk 3-slices (64^3: 8, measured
        # 1.5x; 224^3: 1, where one volume already fills its calls). CUDA: 1. At 224^3 on an H200
        # (bf16, npy, 8 writers) batches of 16-128 raised the generator-only rate 110 -> 262-295
        # volumes/s but written volumes fell 68 -> 45-50/s: the writers, not the GPU, set the pace
        # of `generate` there (docs/ctsgan.md).
        cfg = config
        if device.type == "cuda":
            return 1
        return max(1, min(8, -(-2 * self.batched_chunk(cfg, device) // max(1, cfg.depth - 2))))


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run R_v with one intra-op thread on CPU.

    The LSTM is a chain of small sequential steps: extra threads cannot speed it up, and on a
    busy machine their per-step synchronisation made it 10-100x slower (measured: 30 ms with one
    thread, 0.2-16 s with two on a shared 2-core machine).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def render_volume(
    gen: CTSGANGenerator,
    n_slices: int,
    noise: torch.Generator,
    device: torch.device,
    *,
    dtype: torch.dtype = torch.float32,
    chunk: int = 32,
) -> torch.Tensor:
    """One volume of ``n_slices`` axial slices, rendered ``chunk`` 3-slices per G call
    (:func:`render_volumes` with one noise generator).

    Memory holds one chunk of 3-slices plus the float32 output volume on ``device``.

    Returns:
        (n_slices, S, S) float32 in [-1, 1] on ``device``.
    """
    return render_volumes(gen, n_slices, [noise], device, dtype=dtype, chunk=chunk)[0]


def render_volumes(
    gen: CTSGANGenerator,
    n_slices: int,
    noises: Sequence[torch.Generator],
    device: torch.device,
    *,
    dtype: torch.dtype = torch.float32,
    chunk: int = 32,
) -> torch.Tensor:
    """Several volumes at once: R_v over the batch of volumes in one call, G_slice over
    ``chunk`` 3-slices per call taken across volume boundaries.

    Volume b draws its latents from ``noises[b]`` exactly as :func:`render_volume` does, so it
    is the batch-1 volume of that noise up to float rounding (batched GEMMs may sum in another
    order; tested to 1e-5 on [-1, 1] outputs), whatever the batch it is rendered in.

    Memory holds one chunk of 3-slices plus the B float32 output volumes on ``device`` (with
    ``g_head``, a second copy of them while the head runs over z-chunks).

    Returns:
        (B, n_slices, S, S) float32 in [-1, 1] on ``device``.
    """
    n_pos, b = n_slices - 2, len(noises)
    if b < 1:
        raise ValueError("render_volumes needs at least one noise generator")
    latents = [_latents(gen, 1, n_pos, g, device) for g in noises]  # the batch-1 draws, volume by volume
    patient = torch.cat([lat[0] for lat in latents])  # (B, P)
    eps = torch.cat([lat[1] for lat in latents])  # (B, L, E)
    h0 = torch.cat([lat[2] for lat in latents], dim=1)  # (2, B, H)
    field = None if latents[0][3] is None else torch.cat([lat[3] for lat in latents])  # type: ignore[misc]  # (B, L + 2, R, R)
    rows = torch.arange(b * n_pos, device=device)
    s = gen.size
    out = torch.empty((b, n_slices, s, s), dtype=torch.float32, device=device)
    use_autocast = dtype != torch.float32
    with torch.inference_mode(), _one_cpu_thread(device):
        codes = gen.codes(patient, eps, h0)  # (B, L, C), float32
    flat = codes.reshape(b * n_pos, -1)  # row v * L + k: volume v, position k
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
        for i in range(0, b * n_pos, chunk):
            r = rows[i : i + chunk]
            maps = None if field is None else three_slice_noise(field, r // n_pos, r % n_pos)
            three = gen(flat[i : i + chunk], maps)  # (c, 3, S, S)
            j = 0
            while j < three.shape[0]:  # split the chunk at volume boundaries: plain slice copies
                v, k = divmod(i + j, n_pos)
                m = min(three.shape[0] - j, n_pos - k)  # rows of volume v in this chunk
                out[v, k + 1 : k + 1 + m] = three[j : j + m, 1]
                if k == 0:
                    out[v, 0] = three[j, 0]
                if k + m == n_pos:
                    out[v, n_slices - 1] = three[j + m - 1, 2]
                j += m
        head: VolumeHead | None = getattr(gen, "head", None)
        if head is not None:
            out = head.refine(out, chunk=max(1, chunk // b)).clamp_(-1.0, 1.0)
    return out


def _volume_depth(cfg: CTSGANConfig, slices: int | None, size: int | None) -> int:
    """Axial slices of a sampled volume (``slices`` or the config's depth); ValueError for a size
    CT-SGAN cannot render or fewer than 3 slices."""
    if size is not None and size != cfg.size:
        raise ValueError(f"ctsgan renders {cfg.size}x{cfg.size} slices; size must be {cfg.size} (use --slices for depth)")
    n_slices = cfg.depth if slices is None else slices
    if n_slices < 3:
        raise ValueError(f"slices must be >= 3, got {n_slices}")
    return n_slices


def build_generator(cfg: CTSGANConfig) -> CTSGANGenerator:
    """R_v + G_slice for ``cfg``."""
    return CTSGANGenerator(
        cfg.size, cfg.patient_dim, cfg.noise_dim, cfg.rnn_hidden, cfg.slice_dim, cfg.g_width, cfg.g_max_width,
        cfg.position_dim, cfg.g_upsample, cfg.g_refine, cfg.g_noise, tuple(cfg.g_noise_smooth),  # type: ignore[arg-type]
        cfg.neighbour_codes, cfg.g_head,
    )


def d_windows_unit(cfg: CTSGANConfig) -> list[tuple[float, float]]:
    """``cfg.d_windows`` (HU) in the networks' [-1, 1] units."""
    def unit(hu: float) -> float:
        return float(hu_to_unit(np.array([hu], dtype=np.float32), *cfg.hu_window, cfg.hu_knots)[0])

    return [(unit(a), unit(b)) for a, b in cfg.d_windows]


def build_discriminator(cfg: CTSGANConfig) -> CTSGANDiscriminator:
    """D_slice + D_slab for ``cfg``."""
    windows = d_windows_unit(cfg)
    lecam = cfg.lecam_weight > 0
    return CTSGANDiscriminator(
        SliceDiscriminator(
            cfg.size, cfg.depth - 2, cfg.d_slice_width, cfg.d_slice_max_width, cfg.mbstd_group, cfg.d_position_channels,
            windows=windows, spectral=cfg.d_spectral,
        ),
        SlabDiscriminator(
            cfg.size, cfg.slab_depth, cfg.d_slab_width, cfg.d_slab_max_width,
            num_positions=cfg.depth - 2 - cfg.slab_depth + 1 if cfg.slab_position else 0, mbstd_group=cfg.mbstd_group,
            position_channels=cfg.d_position_channels if cfg.slab_position else 0, windows=windows,
            spectral=cfg.d_slab_spectral,
        ),
        LeCamAnchors(cfg.lecam_decay) if lecam else None,
        LeCamAnchors(cfg.lecam_decay) if lecam else None,
    )
