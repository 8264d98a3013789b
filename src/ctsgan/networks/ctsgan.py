"""CT-SGAN networks (Pesaranghader et al. 2021): R_v, G_slice, D_slice, D_slab.

A volume of S axial slices is made of L = S - 2 overlapping "3D slices" (3 adjacent axial
slices as channels). ``R_v`` (a bidirectional LSTM fed with noise) gives one slice code per
3-slice position; together with one patient code per volume it drives ``G_slice``, a 2D
generator (MoCoGAN's image generator grown to reach S). ``D_slice`` judges single 3-slices
and knows their position (projection discriminator on a position embedding); ``D_slab``
judges slabs of T consecutive centre slices with 3D convolutions.

All modules are pure ``nn.Module``s; noise is sampled by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctsgan.networks.common import (
    NoiseInjection,
    fold_resize_convs,
    level_channels,
    run_fusing_resize,
    size_plan,
)
from ctsgan.networks.common import fold_batchnorm as fold_conv_batchnorm


def upsampling_plan(size: int) -> tuple[int, int]:
    """(base, n_up) with ``base * 2**n_up == size``, 4 <= base <= 7 and n_up >= 1 (e.g. 224 -> (7, 5));
    the one size rule of every network here (:func:`ctsgan.networks.common.size_plan`)."""
    return size_plan(size)


def _weights_to(module: nn.Module, memory_format: torch.memory_format) -> None:
    """Store ``module``'s convolution weights in ``memory_format`` (channels-last 2D or 3D); the
    convolutions then compute in that layout and pass it on to their outputs."""
    dims = 4 if memory_format == torch.channels_last else 5
    for m in module.modules():
        for p in m.parameters(recurse=False):
            if p.dim() == dims:
                p.data = p.data.contiguous(memory_format=memory_format)


class SliceCodeRNN(nn.Module):
    """R_v: bidirectional LSTM over slice positions -> one slice code per position.

    Args:
        noise_dim: size of the per-position random input eps_i.
        hidden_dim: LSTM hidden size per direction.
        code_dim: size Z of each output slice code.
    """

    def __init__(self, noise_dim: int, hidden_dim: int, code_dim: int) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.hidden_dim = hidden_dim
        self.code_dim = code_dim
        self.lstm = nn.LSTM(noise_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_dim, code_dim)

    def forward(self, eps: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """Slice codes.

        Args:
            eps: per-position noise (B, L, noise_dim).
            h0: initial hidden state noise (2, B, hidden_dim) (one per direction).

        Returns:
            codes (B, L, code_dim).
        """
        if eps.dim() != 3 or eps.shape[-1] != self.noise_dim:
            raise ValueError(f"eps must be (B, L, {self.noise_dim}), got {tuple(eps.shape)}")
        c0 = torch.zeros_like(h0)
        out, _ = self.lstm(eps, (h0.contiguous(), c0))  # (B, L, 2H)
        return self.proj(out)  # (B, L, Z)


# NoiseInjection's learning-rate multiplier in G_slice (as StyleGAN's equalized learning rate): the
# mix is stored / 10, so Adam's steps move it 10x faster. At 1 the mix was still 0.001-0.03 after
# 3000 cpu64 steps and the volumes were unchanged; at 10 it reached 0.2-0.3 (docs/fidelity.md).
NOISE_GAIN = 10.0


class SliceGenerator(nn.Module):
    """G_slice: code -> one 3-slice (3, S, S) in [-1, 1].

    MoCoGAN's image generator (ConvTranspose + BatchNorm + ReLU, tanh out), grown to reach
    S: the code is projected to a base x base map (base in 4..7), then doubled n_up times
    (S = 224: 7 -> 14 -> 28 -> 56 -> 112 -> 224).

    Args:
        code_dim: input size (patient code + slice code).
        size: output edge S.
        base_width: channels at the finest hidden level; coarser levels double it.
        max_width: cap on the channels of any level.
        out_channels: 3 (a 3-slice).
        upsample: ``transposed`` (MoCoGAN's 4x4 stride-2 transposed convolutions, the paper) or
            ``resize`` (nearest-neighbour doubling then a 3x3 convolution, Odena et al. 2016: no
            uneven overlap, so no checkerboard texture). A resize pair runs as the equal
            transposed convolution with tied 4x4 kernels (:func:`run_fusing_resize`), so it costs
            the arithmetic of ``transposed``.
        refine: the last upsampling makes ``base_width`` channels at full resolution (BatchNorm,
            ReLU) and a 3x3 convolution maps them to the output, as StyleGAN and BigGAN keep a
            convolution at every resolution; False (the paper): the last upsampling writes the
            output directly, so each full-resolution pixel is one linear map of half-resolution
            features.
        noise_maps: M > 0 adds M noise maps at half resolution (S/2) to the last hidden level
            (:class:`NoiseInjection`, after its ReLU); :meth:`forward` then needs ``noise``. CT-SGAN
            gives a 3-slice the maps of its three slices from one noise volume
            (:func:`three_slice_noise`), so stochastic detail stays put along z; 0: the paper.
    """

    def __init__(
        self,
        code_dim: int,
        size: int,
        base_width: int = 32,
        max_width: int = 512,
        out_channels: int = 3,
        upsample: str = "transposed",
        refine: bool = False,
        noise_maps: int = 0,
    ) -> None:
        super().__init__()
        base, n_up = upsampling_plan(size)
        if n_up < 1:
            raise ValueError(f"size {size} too small for G_slice (needs at least one upsampling)")
        self.code_dim = code_dim
        self.size = size
        self.noise_maps = noise_maps
        widths = level_channels(n_up, base_width, max_width)  # levels base*2^0 .. base*2^(n_up-1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(code_dim, widths[0], base, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        if upsample not in ("transposed", "resize"):
            raise ValueError(f"upsample must be 'transposed' or 'resize', got {upsample!r}")

        def up(c_in: int, c_out: int) -> list[nn.Module]:
            if upsample == "resize":
                return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)]
            return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]

        for i in range(1, n_up):
            layers += [*up(widths[i - 1], widths[i]), nn.BatchNorm2d(widths[i]), nn.ReLU(True)]
        if noise_maps:
            layers.append(NoiseInjection(widths[-1], noise_maps, NOISE_GAIN))  # at S/2, before the last doubling
        if refine:
            layers += [*up(widths[-1], widths[-1]), nn.BatchNorm2d(widths[-1]), nn.ReLU(True)]
            layers += [nn.Conv2d(widths[-1], out_channels, 3, 1, 1, bias=False), nn.Tanh()]
        else:
            layers += [*up(widths[-1], out_channels), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.reset_parameters()
        # channels-last weights: the transposed convolutions run 1.2-1.8x faster in this layout on
        # CPU (measured, docs/ctsgan.md); outputs are the same tensors up to float rounding
        _weights_to(self.main, torch.channels_last)

    def reset_parameters(self) -> None:
        """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm gamma N(1, 0.02), beta 0."""
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d | nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, code: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Args: code (B, code_dim); noise (B, noise_maps, S/2, S/2) when ``noise_maps``.
        Returns: 3-slices (B, 3, S, S) in [-1, 1]."""
        if code.dim() != 2 or code.shape[1] != self.code_dim:
            raise ValueError(f"code must be (B, {self.code_dim}), got {tuple(code.shape)}")
        # resize pairs run as equal transposed convolutions (2.25x less arithmetic there)
        return run_fusing_resize(self.main, code[:, :, None, None], noise)  # (B, 3, S, S)


def position_features(length: int, n_features: int, device: torch.device | None = None) -> torch.Tensor:
    """Fourier features of the relative axial position of each of ``length`` 3-slices.

    Position k maps to t = k / (length - 1) in [0, 1] (0: the head end, 1: the feet end), so a
    longer volume (``--slices``) spans the same anatomy with finer steps. Features are
    ``sin(pi * 2**j * t)`` and ``cos(pi * 2**j * t)`` for j = 0 .. n_features / 2 - 1.

    Returns:
        (length, n_features) float32; (length, 0) when ``n_features`` is 0.
    """
    if n_features % 2:
        raise ValueError(f"n_features must be even, got {n_features}")
    t = torch.linspace(0.0, 1.0, length, device=device) if length > 1 else torch.zeros(1, device=device)  # (L,)
    freqs = torch.pi * 2.0 ** torch.arange(n_features // 2, device=device, dtype=torch.float32)  # (F/2,)
    ang = t[:, None] * freqs[None]  # (L, F/2)
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)  # (L, F)


class VolumeHead(nn.Module):
    """A residual 3D convolution head over the assembled volume (beyond the paper).

    G_slice draws every 3-slice from one code, so a structure can only move from slice to slice
    when R_v's code moves it (docs/fidelity.md, "Why the cuts are streaked"). This head sees
    ``layers`` slices either side of each slice and adds a learned correction: ``x + f(x)``,
    ``f`` = ``layers`` 3x3x3 convolutions (LeakyReLU 0.2 between, replicate padding), the last
    zero-initialised, so an untrained head is the identity.

    Args:
        width: channels of the hidden convolutions.
        layers: convolutions (>= 2); also the context, in slices, each output slice depends on.
    """

    def __init__(self, width: int = 16, layers: int = 3) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        widths = [1] + [width] * (layers - 1) + [1]
        convs: list[nn.Module] = []
        for i in range(layers):
            convs.append(nn.Conv3d(widths[i], widths[i + 1], 3, padding=1, padding_mode="replicate"))
            if i < layers - 1:
                convs.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*convs)
        self.context = layers
        last = convs[-1]
        assert isinstance(last, nn.Conv3d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, vol: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, S, S) -> (B, 1, D, S, S), the volume plus its correction."""
        return vol + self.net(vol)

    def refine(self, vol: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """The head over whole volumes (B, D, S, S), ``chunk`` output slices per call.

        The volume counts as extended by :attr:`context` copies of its end slices either side
        (replicate padding of the input; the training slab is rendered the same way, so what D_slab
        judges is what this returns). Each call takes its slices plus that context, so the result
        does not depend on ``chunk`` while memory holds one chunk's activations.
        """
        depth, r = vol.shape[1], self.context
        out = torch.empty_like(vol)
        for a in range(0, depth, chunk):
            b = min(depth, a + chunk)
            idx = torch.arange(a - r, b + r, device=vol.device).clamp(0, depth - 1)
            out[:, a:b] = self(vol[:, None, idx])[:, 0, r : r + b - a]
        return out


class CTSGANGenerator(nn.Module):
    """R_v + G_slice: noise -> slice codes -> 3-slices -> volume.

    Args:
        size: slice edge S.
        patient_dim: size P of the per-volume patient code.
        noise_dim: size of the per-position R_v input eps_i.
        rnn_hidden: R_v hidden size per direction.
        slice_dim: size Z of the slice codes.
        base_width, max_width: G_slice widths.
        position_dim: F Fourier features of the relative slice position appended to each G input
            (0: the paper, where only R_v can carry position; see :func:`position_features`).
        upsample, refine: G_slice's upsampling layers and full-resolution block (:class:`SliceGenerator`).
        slice_noise: G_slice takes 3 noise maps at S/2 per 3-slice, those of its three slices in a
            per-volume noise volume (:func:`three_slice_noise`); False: the paper.
        noise_smooth: (sigma_z in slices, sigma_xy in noise-map pixels) of the Gaussian the noise
            volume is smoothed with before use (:func:`smooth_noise_volume`); (0, 0): white noise.
        neighbour_codes: G_slice also gets the slice codes of the neighbouring 3-slices (k - 1 and
            k + 1, repeated at the volume's ends): 3-slice k draws slices k, k + 1, k + 2, whose
            centres are the 3-slices k - 1, k, k + 1, so the change D_slice asks for *inside* a
            3-slice can come from how R_v's codes change, not from one code; False: the paper.
        head_width: a :class:`VolumeHead` of this width over the assembled volume (0: none, the paper).
    """

    def __init__(
        self,
        size: int,
        patient_dim: int = 64,
        noise_dim: int = 32,
        rnn_hidden: int = 128,
        slice_dim: int = 64,
        base_width: int = 32,
        max_width: int = 512,
        position_dim: int = 0,
        upsample: str = "transposed",
        refine: bool = False,
        slice_noise: bool = False,
        noise_smooth: tuple[float, float] = (0.0, 0.0),
        neighbour_codes: bool = False,
        head_width: int = 0,
    ) -> None:
        super().__init__()
        self.size = size
        self.noise_smooth = (float(noise_smooth[0]), float(noise_smooth[1]))
        self.neighbour_codes = neighbour_codes
        self.patient_dim = patient_dim
        self.noise_dim = noise_dim
        self.rnn_hidden = rnn_hidden
        self.position_dim = position_dim
        self.rv = SliceCodeRNN(noise_dim, rnn_hidden, slice_dim)
        self.g_slice = SliceGenerator(
            patient_dim + (3 if neighbour_codes else 1) * slice_dim + position_dim, size, base_width, max_width,
            upsample=upsample, refine=refine,
            noise_maps=3 if slice_noise else 0,
        )
        self.head = VolumeHead(head_width) if head_width else None

    def codes(self, patient: torch.Tensor, eps: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """G inputs for every position: [patient code, z_i] (+ position features when ``position_dim``;
        [patient, z_{i-1}, z_i, z_{i+1}, ...] with ``neighbour_codes``).

        Args:
            patient: (B, P) patient codes.
            eps: (B, L, noise_dim) R_v noise.
            h0: (2, B, rnn_hidden) R_v initial state noise.

        Returns:
            (B, L, P + Z + F).
        """
        z = self.rv(eps, h0)  # (B, L, Z)
        b, length = z.shape[:2]
        parts = [patient[:, None, :].expand(-1, length, -1), z]  # (B, L, P), (B, L, Z)
        if self.neighbour_codes:  # z_{i-1}, z_i, z_{i+1}, the ends repeated
            parts[1:] = [torch.cat([z[:, :1], z[:, :-1]], 1), z, torch.cat([z[:, 1:], z[:, -1:]], 1)]
        if self.position_dim:
            pos = position_features(length, self.position_dim, z.device).to(z.dtype)  # (L, F)
            parts.append(pos[None].expand(b, -1, -1))  # (B, L, F)
        return torch.cat(parts, dim=2)

    def forward(self, code: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Render 3-slices. Args: code (N, P + Z); noise (N, 3, S/2, S/2) with ``slice_noise``
        (:func:`three_slice_noise`). Returns: (N, 3, S, S)."""
        return self.g_slice(code, noise)


def noise_volume_shape(gen: nn.Module, n_slices: int) -> tuple[int, int, int] | None:
    """(n_slices, S/2, S/2): the per-volume noise volume a CT-SGAN generator with ``slice_noise``
    takes (one map per axial slice); None without."""
    g_slice: Any = gen.g_slice
    if not getattr(g_slice, "noise_maps", 0):
        return None
    r = int(g_slice.size) // 2
    return (n_slices, r, r)


def _gaussian_taps(sigma: float, n: int) -> torch.Tensor:
    """Gaussian kernel of std ``sigma`` (radius ceil(3 sigma), at most n - 1 so that a circular pad of
    n samples can hold it), scaled to unit L2 norm: filtered unit white noise keeps unit variance."""
    radius = min(math.ceil(3 * sigma), n - 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.norm()


def smooth_noise_volume(noise: torch.Tensor, sigma_z: float, sigma_xy: float) -> torch.Tensor:
    """White noise volumes -> Gaussian-correlated noise of unit variance.

    Separable Gaussian filtering along z (``sigma_z`` slices) and in-plane (``sigma_xy`` pixels),
    with circular padding so that every voxel is the same filter of white noise (stationary, unit
    variance everywhere); a sigma of 0 leaves that axis white. Neighbouring slices then correlate
    by exp(-1 / (4 sigma_z^2)): G's stochastic detail drifts along z over a few slices instead of
    jumping from slice to slice (speckle) or staying put (streaks).

    Args:
        noise: (B, D, R, R) unit white noise; sigma_z, sigma_xy: >= 0.

    Returns:
        (B, D, R, R).
    """
    out = noise
    for dim, sigma in ((1, sigma_z), (2, sigma_xy), (3, sigma_xy)):
        if sigma <= 0:
            continue
        taps = _gaussian_taps(sigma, out.shape[dim]).to(out.device, out.dtype)
        r = (taps.numel() - 1) // 2
        moved = out.movedim(dim, -1)  # (..., n): filter the last axis
        flat = moved.reshape(-1, 1, moved.shape[-1])
        flat = F.conv1d(F.pad(flat, (r, r), mode="circular"), taps[None, None])
        out = flat.reshape(moved.shape).movedim(-1, dim)
    return out


def three_slice_noise(noise: torch.Tensor, volume: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """The noise maps of 3-slices: 3-slice k of volume v renders slices k, k + 1, k + 2 and gets
    maps k, k + 1, k + 2 of that volume's noise volume, so the neighbouring 3-slices k and k + 1
    share two maps and G's stochastic detail is one 3D field, not fresh noise on every slice.

    Args:
        noise: (B, n_slices, R, R) noise volumes.
        volume, position: (N,) int64 volume index v and 3-slice index k (0 .. n_slices - 3).

    Returns:
        (N, 3, R, R).
    """
    k = position[:, None] + torch.arange(3, device=position.device)[None]  # (N, 3)
    return noise[volume[:, None], k]


def assemble_volume(three_slices: torch.Tensor) -> torch.Tensor:
    """Consecutive 3-slices -> volume.

    L 3-slices give L + 2 slices: the centre channels give slices 1..L; the first channel of
    the first and the last channel of the last give slices 0 and L + 1.

    Args:
        three_slices: (L, 3, H, W), in slice order.

    Returns:
        (L + 2, H, W).
    """
    if three_slices.dim() != 4 or three_slices.shape[1] != 3:
        raise ValueError(f"expected (L, 3, H, W), got {tuple(three_slices.shape)}")
    return torch.cat([three_slices[:1, 0], three_slices[:, 1], three_slices[-1:, 2]], dim=0)


def minibatch_std(h: torch.Tensor, group: int) -> torch.Tensor:
    """StyleGAN's minibatch standard deviation, on pooled features.

    Samples are split into groups of ``group`` (the batch must divide; else one group of all);
    the std over each group of every feature, averaged, is one number per group, given to
    each member. A generator whose samples look alike gets a visibly low value.

    Args:
        h: (B, C) features.

    Returns:
        (B, 1).
    """
    b = h.shape[0]
    g = group if b % group == 0 else b
    if g < 2:
        return torch.zeros(b, 1, dtype=h.dtype, device=h.device)
    y = h.reshape(g, b // g, -1)  # (G, M, C): member i of group m is row m + i * M
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=1)  # (M,)
    return std.repeat(g)[:, None]  # (B, 1)


def radial_bins(size: int) -> torch.Tensor:
    """(size * (size // 2 + 1), size // 2) averaging matrix from a ``rfft2`` half-plane to rings.

    Ring r holds the frequencies with ``round(sqrt(ky^2 + kx^2)) == r`` (cycles per image,
    r = 0 .. size/2 - 1); the corners beyond size/2 are left out. Each column sums to 1.
    """
    ky = torch.fft.fftfreq(size) * size  # (S,)
    kx = torch.fft.rfftfreq(size) * size  # (S/2 + 1,)
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().long().flatten()  # (S * (S/2 + 1),)
    n = size // 2
    keep = r < n
    m = torch.zeros(r.numel(), n)
    m[keep.nonzero().squeeze(1), r[keep]] = 1.0
    return m / m.sum(0, keepdim=True)


def reduced_spectrum(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Log of the azimuthally averaged power spectrum of each channel (SSD-GAN's reduced spectrum).

    Args:
        x: (B, C, S, S) images; bins: :func:`radial_bins` of S.

    Returns:
        (B, C * S/2): ``log(mean power on ring r + 1e-6)``, channel-major.
    """
    f = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, S, S/2 + 1)
    power = (f.real**2 + f.imag**2).flatten(2)  # (B, C, S * (S/2 + 1))
    return torch.log(power @ bins + 1e-6).flatten(1)


def z_structure_spectrum(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """How a slab's in-plane detail changes along z: for each slice distance d = 1 .. T - 1 and
    in-plane frequency ring r, the log of the mean power of ``x[k + d] - x[k]`` on ring r.

    A structure function per spatial frequency: a volume whose fine detail (high r) is the same on
    every slice has almost no power at any d there, a real lung (vessels entering and leaving the
    slice) has it already at d = 1. Differences, not an FFT along z, so a trend over the slab does
    not wrap around.

    Args:
        x: (B, 1, T, S, S) slabs; bins: :func:`radial_bins` of S.

    Returns:
        (B, (T - 1) * S/2): ``log(mean power + 1e-6)``, distance-major.
    """
    f = torch.fft.rfft2(x[:, 0].float(), norm="ortho")  # (B, T, S, S/2 + 1): the transform is linear
    depth = f.shape[1]
    feats = []
    for d in range(1, depth):
        diff = f[:, d:] - f[:, :-d]  # (B, T - d, S, S/2 + 1): spectrum of x[k + d] - x[k]
        power = (diff.real**2 + diff.imag**2).mean(1).flatten(1)  # (B, S * (S/2 + 1))
        feats.append(torch.log(power @ bins + 1e-6))  # (B, S/2)
    return torch.cat(feats, dim=1)


def window_channels(x: torch.Tensor, windows: Sequence[tuple[float, float]]) -> torch.Tensor:
    """``x`` followed by one clamped re-scaling per window: what a radiologist's CT windows show.

    Each window (lo, hi) in the networks' [-1, 1] units maps [lo, hi] linearly onto [-1, 1] and
    clamps outside it (``hardtanh``: gradients flow inside the window), so a discriminator sees
    soft-tissue contrast (fat vs muscle, ~100 HU) magnified instead of as 6 % of its input range.

    Args:
        x: (B, C, ...) in [-1, 1]; windows: (lo, hi) pairs with hi > lo.
    Returns:
        (B, C * (1 + len(windows)), ...): ``x``'s channels, then each window's.
    """
    if not windows:
        return x
    parts = [x]
    for lo, hi in windows:
        parts.append(F.hardtanh((x - (hi + lo) / 2) * (2.0 / (hi - lo))))
    return torch.cat(parts, dim=1)


def _split_position_planes(state_dict: dict[str, Any], prefix: str, image_channels: int, spatial: tuple[int, ...]) -> None:
    """Convert, in place, a checkpoint whose first convolution took position planes as extra input
    channels (ctsgan before the position bias): the image channels stay in the convolution, the
    plane channels' kernels summed over y/x become ``pos_bias`` (exactly what constant planes add
    away from the border)."""
    key = prefix + "features.0.weight"
    w = state_dict.get(key)
    if w is None or w.shape[1] == image_channels or prefix + "pos_bias.weight" in state_dict:
        return
    state_dict[key] = w[:, :image_channels].contiguous()
    state_dict[prefix + "pos_bias.weight"] = w[:, image_channels:].sum(dim=spatial).contiguous()


def _down_widths(base_width: int, max_width: int, n: int) -> list[int]:
    """Widths from the finest level (index 0) to the coarsest: :func:`level_channels` reversed."""
    return level_channels(n, base_width, max_width)[::-1]


class SliceDiscriminator(nn.Module):
    """D_slice: judges (3, S, S) 3-slices, conditioned on slice position (projection D).

    ``out = w . h + <embed(position), h>`` with h the globally summed features (Miyato &
    Koyama 2018), so D compares a slice with what slices at that position should look like.

    Args:
        size: slice edge S.
        num_positions: number of 3-slice positions (S - 2 for S-slice volumes).
        base_width, max_width: channel widths (doubling per stride-2 level).
        mbstd_group: minibatch-std group size (0: off, the paper); see :func:`minibatch_std`.
        position_channels: F Fourier features of the position (:func:`position_features`) that D
            sees from its first layer (0: the paper's projection only). They act as F constant input
            planes would, computed as what such planes add to the first convolution: a learned
            per-channel bias ``W_pos @ features`` (equal to the planes away from the zero-padded
            border, without their cost; :meth:`_load_from_state_dict` converts a planes checkpoint).
        windows: extra CT windows (lo, hi) in [-1, 1] units that D sees beside the input
            (:func:`window_channels`; empty: the paper).
        spectral: add a linear score of the slice's reduced spectrum (:func:`reduced_spectrum`)
            to the logit, as SSD-GAN does (Chen et al. 2021): a D that sees the power at each
            spatial frequency directly can penalise soft edges or speckle, which convolutional
            Ds tend to miss.
            Zero-initialised, so training starts from the plain D. False: the paper.
    """

    def __init__(
        self,
        size: int,
        num_positions: int,
        base_width: int = 32,
        max_width: int = 512,
        mbstd_group: int = 0,
        position_channels: int = 0,
        windows: Sequence[tuple[float, float]] = (),
        spectral: bool = False,
    ) -> None:
        super().__init__()
        base, n_down = upsampling_plan(size)
        self.size = size
        self.num_positions = num_positions
        self.windows = tuple((float(lo), float(hi)) for lo, hi in windows)
        self.mbstd_group = mbstd_group
        self.position_channels = position_channels
        self.pos_table: torch.Tensor
        self.register_buffer("pos_table", position_features(num_positions, position_channels), persistent=False)
        widths = _down_widths(base_width, max_width, n_down)
        layers: list[nn.Module] = []
        c_in = 3 * (1 + len(self.windows))
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.pos_bias: nn.Linear | None = nn.Linear(position_channels, widths[0], bias=False) if position_channels else None
        self.linear = nn.Linear(c_in + (1 if mbstd_group else 0), 1)
        self.embed = nn.Embedding(num_positions, c_in)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # start close to an unconditional D
        self.spectral: nn.Linear | None = None
        self.spectrum_bins: torch.Tensor
        if spectral:
            self.register_buffer("spectrum_bins", radial_bins(size), persistent=False)
            self.spectral = nn.Linear(3 * (size // 2), 1, bias=False)
            nn.init.zeros_(self.spectral.weight)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        _split_position_planes(state_dict, prefix, 3 * (1 + len(self.windows)), (2, 3))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Args: x (B, 3, S, S); position (B,) int64 in [0, num_positions). Returns: logits (B,)."""
        if x.dim() != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"x must be (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}")
        h = self.features[0](window_channels(x, self.windows))  # (B, C0, S/2, S/2)
        if self.pos_bias is not None:
            feats = self.pos_table[position].to(x.dtype)  # (B, F)
            h = h + self.pos_bias(feats)[:, :, None, None]  # what F constant input planes add
        h = self.features[1:](h).sum(dim=(2, 3))  # (B, C)
        proj = (self.embed(position) * h).sum(1)  # (B,)
        if self.mbstd_group:
            h = torch.cat([h, minibatch_std(h, self.mbstd_group)], dim=1)  # (B, C + 1)
        out = self.linear(h).squeeze(1) + proj  # (B,)
        if self.spectral is not None:
            out = out + self.spectral(reduced_spectrum(x, self.spectrum_bins).to(out.dtype)).squeeze(1)
        return out


class SlabDiscriminator(nn.Module):
    """D_slab: 3D convolutional discriminator on slabs (1, T, S, S) of consecutive centre slices.

    Each level halves y and x (kernel 4, stride 2) and halves z while it is above 1.

    Args:
        size: slice edge S.
        depth: slab depth T.
        base_width, max_width: channel widths.
        num_positions: slab start positions to condition on (projection, as D_slice); 0: an
            unconditional D_slab (the paper).
        mbstd_group: minibatch-std group size (0: off); see :func:`minibatch_std`.
        position_channels: F relative-position Fourier features of each slab slice that D sees
            from its first layer (needs ``num_positions``: slice j of a slab starting at k0 sits at
            (k0 + j) / (num_positions + depth - 2)). They act as F input channels of planes would,
            computed as what such planes add to the first 3D convolution: a learned 1D convolution
            of the (F, T) feature sequence with the same z kernel, stride and padding (equal to the
            planes away from the y/x border, without their cost).
        windows: extra CT windows (lo, hi) in [-1, 1] units, as :class:`SliceDiscriminator`'s.
        spectral: add a linear score of the slab's z-structure spectrum
            (:func:`z_structure_spectrum`: the power of slice differences at each slice distance
            and in-plane frequency) to the logit, as D_slice's SSD-GAN score does in-plane: a D
            that sees directly how much fine detail changes from slice to slice can penalise a
            volume whose detail runs straight through z (the streaked coronal cut). Zero-initialised;
            False: the paper.
    """

    def __init__(
        self,
        size: int,
        depth: int,
        base_width: int = 16,
        max_width: int = 256,
        num_positions: int = 0,
        mbstd_group: int = 0,
        position_channels: int = 0,
        windows: Sequence[tuple[float, float]] = (),
        spectral: bool = False,
    ) -> None:
        super().__init__()
        base, n_down = upsampling_plan(size)
        self.windows = tuple((float(lo), float(hi)) for lo, hi in windows)
        if position_channels and not num_positions:
            raise ValueError("position_channels needs num_positions (the number of slab start positions)")
        self.size = size
        self.depth = depth
        self.num_positions = num_positions
        self.mbstd_group = mbstd_group
        self.position_channels = position_channels
        n_slices = num_positions + depth - 1 if num_positions else 0
        self.pos_table: torch.Tensor
        self.register_buffer("pos_table", position_features(n_slices, position_channels), persistent=False)
        layers: list[nn.Module] = []
        c_in, d = 1 + len(self.windows), depth
        widths = _down_widths(base_width, max_width, n_down)
        for w in widths:
            if d >= 2:
                layers.append(nn.Conv3d(c_in, w, 4, (2, 2, 2), 1))
                d = (d + 2 - 4) // 2 + 1
            else:
                layers.append(nn.Conv3d(c_in, w, (1, 4, 4), (1, 2, 2), (0, 1, 1)))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = w
        self.features = nn.Sequential(*layers)
        _weights_to(self.features, torch.channels_last_3d)  # 1.5x faster backward on CPU (docs/ctsgan.md)
        self.pos_bias: nn.Conv1d | None = None
        if position_channels:  # the first layer always strides z (depth >= 2)
            self.pos_bias = nn.Conv1d(position_channels, widths[0], 4, 2, 1, bias=False)
        self.linear = nn.Linear(c_in + (1 if mbstd_group else 0), 1)
        self.embed: nn.Embedding | None = None
        if num_positions:
            self.embed = nn.Embedding(num_positions, c_in)
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.spectral: nn.Linear | None = None
        self.spectrum_bins: torch.Tensor
        if spectral:
            self.register_buffer("spectrum_bins", radial_bins(size), persistent=False)
            self.spectral = nn.Linear((depth - 1) * (size // 2), 1, bias=False)
            nn.init.zeros_(self.spectral.weight)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        _split_position_planes(state_dict, prefix, 1 + len(self.windows), (3, 4))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, 1, T, S, S); position (B,) int64 slab start (needed when ``num_positions``).
        Returns: logits (B,)."""
        if x.dim() != 5 or x.shape[1:] != (1, self.depth, self.size, self.size):
            raise ValueError(f"x must be (B, 1, {self.depth}, {self.size}, {self.size}), got {tuple(x.shape)}")
        if self.embed is not None and position is None:
            raise ValueError("this D_slab is position-conditioned: pass the slab start positions (B,)")
        h = self.features[0](window_channels(x, self.windows))  # (B, C0, T', S/2, S/2)
        if self.pos_bias is not None:
            assert position is not None
            idx = position[:, None] + torch.arange(self.depth, device=position.device)[None]  # (B, T)
            feats = self.pos_table[idx].to(x.dtype).permute(0, 2, 1)  # (B, F, T)
            h = h + self.pos_bias(feats)[:, :, :, None, None]  # (B, C0, T', 1, 1): what F planes add
        h = self.features[1:](h).sum(dim=(2, 3, 4))  # (B, C)
        out = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
        if self.embed is not None:
            assert position is not None
            out = (self.embed(position) * h).sum(1)  # (B,)
        if self.mbstd_group:
            h = torch.cat([h, minibatch_std(h, self.mbstd_group)], dim=1)  # (B, C + 1)
        out = self.linear(h).squeeze(1) + out  # (B,)
        if self.spectral is not None:
            out = out + self.spectral(z_structure_spectrum(x, self.spectrum_bins).to(out.dtype)).squeeze(1)
        return out


class CTSGANDiscriminator(nn.Module):
    """The two discriminators held together (one optimizer, one state dict), with the state of
    any regulariser that belongs to each (``lecam_slice`` / ``lecam_slab``: their LeCam anchors,
    or None) so that checkpoints carry it."""

    def __init__(self, d_slice: SliceDiscriminator, d_slab: SlabDiscriminator,
                 lecam_slice: nn.Module | None = None, lecam_slab: nn.Module | None = None) -> None:
        super().__init__()
        self.d_slice = d_slice
        self.d_slab = d_slab
        self.lecam_slice = lecam_slice
        self.lecam_slab = lecam_slab


class CodeProjection(nn.Module):
    """A transposed convolution on a 1x1 input, computed as one matrix product.

    ``ConvTranspose2d(C_in, C_out, k, 1, 0)`` applied to (B, C_in, 1, 1) is a dense map to
    (B, C_out, k, k); as a single GEMM it runs at matmul speed. The output is channels-last.
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        c_in, c_out, k, _ = conv.weight.shape
        self.c_out, self.k = c_out, k
        w = conv.weight.detach().permute(0, 2, 3, 1).reshape(c_in, k * k * c_out)  # (C_in, k*k*C_out)
        self.weight = nn.Parameter(w.contiguous(), requires_grad=False)
        b = conv.bias.detach() if conv.bias is not None else torch.zeros(c_out)
        self.bias = nn.Parameter(b.repeat(k * k), requires_grad=False)  # (k*k*C_out,), channel fastest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, C_in, 1, 1). Returns: (B, C_out, k, k) in channels-last layout."""
        y = torch.addmm(self.bias.to(x.dtype), x.flatten(1), self.weight.to(x.dtype))  # (B, k*k*C_out)
        return y.view(-1, self.k, self.k, self.c_out).permute(0, 3, 1, 2)


def fold_batchnorm(gen: SliceGenerator) -> SliceGenerator:
    """An inference copy of ``gen``: same function as ``gen.eval()`` up to float rounding, faster.

    - every eval-mode BatchNorm is folded into the transposed convolution before it
      (:func:`ctsgan.networks.common.fold_batchnorm`): one memory pass less;
    - each nearest doubling + 3x3 convolution (``upsample: resize``) becomes the equal stride-2
      transposed convolution (:func:`ctsgan.networks.common.resize_conv_as_transposed`): 2.25x
      less arithmetic and no 4x upsampled intermediate. On an H200 in bf16 the upsampling and the
      casts around it (autocast runs nearest upsampling in float32) were 68 % of G_slice's time
      (docs/results/gpu_h200/gpu_generate_profile_before_2026-11-30.jsonl);
    - the first layer (1x1 -> base x base) becomes one matrix product (:class:`CodeProjection`).
    """
    import copy

    folded = copy.deepcopy(gen).eval()
    layers = list(fold_resize_convs(fold_conv_batchnorm(folded.main)))
    first = layers[0]
    if isinstance(first, nn.ConvTranspose2d) and first.stride == (1, 1) and first.padding == (0, 0):
        layers[0] = CodeProjection(first)
    folded.main = nn.Sequential(*layers)
    _weights_to(folded.main, torch.channels_last)  # as in training: the faster layout on CPU
    return folded.requires_grad_(False)
