"""What the 2D (CT-SGAN) and 3D (baseline GAN) networks share: one size rule, one width pyramid,
one BatchNorm-folding path."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONV_BN = (
    (nn.ConvTranspose2d, nn.BatchNorm2d, True),
    (nn.ConvTranspose3d, nn.BatchNorm3d, True),
    (nn.Conv2d, nn.BatchNorm2d, False),
    (nn.Conv3d, nn.BatchNorm3d, False),
)


def size_plan(size: int) -> tuple[int, int]:
    """``(s0, k)`` with ``size == s0 * 2**k``, ``4 <= s0 <= 7`` and ``k >= 1``: a seed edge and the
    number of doublings from it (e.g. 224 -> (7, 5), 64 -> (4, 4)). The pair is unique when it exists.

    Raises:
        ValueError: naming the size when it has no such form (e.g. 7, 9, 50, 100).
    """
    s0, k = size, 0
    while s0 % 2 == 0 and s0 // 2 >= 4:
        s0, k = s0 // 2, k + 1
    if size < 8 or s0 > 7:
        raise ValueError(
            f"size {size} is not s0 * 2^k with 4 <= s0 <= 7 and k >= 1 (e.g. 16, 24, 32, 64, 96, 128, 224)"
        )
    return s0, k


def level_channels(levels: int, base_channels: int, max_channels: int) -> list[int]:
    """Hidden widths from the coarsest level to the finest: ``levels`` entries.

    The finest level has ``base_channels``; each coarser level doubles, capped at
    ``max_channels``. Example: ``level_channels(3, 16, 48) == [48, 32, 16]``.
    """
    if base_channels < 1 or max_channels < base_channels:
        raise ValueError(f"need 1 <= base_channels <= max_channels, got {base_channels}, {max_channels}")
    return [min(base_channels * 2 ** (levels - 1 - i), max_channels) for i in range(levels)]


def fold_batchnorm(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with every (convolution or transposed convolution, BatchNorm) pair, 2D or 3D, replaced
    by one convolution with the BatchNorm's eval-mode affine map folded in (torch's
    ``fuse_conv_bn_eval``); other layers are kept as they are. ``seq`` must be in eval mode."""
    mods, out, i = list(seq), [], 0
    while i < len(mods):
        m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        pair = next((t for conv, bn, t in _CONV_BN if type(m) is conv and type(nxt) is bn), None)
        if pair is not None:
            out.append(fuse_conv_bn_eval(m, nxt, transpose=pair))  # type: ignore[arg-type, type-var]
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out)


# Nearest doubling then a 3x3 convolution (padding 1), seen along one axis: output 2m reads
# x[m-1] with tap 0 and x[m] with taps 1 and 2; output 2m+1 reads x[m] with taps 0 and 1 and
# x[m+1] with tap 2. A stride-2 transposed convolution (kernel 4, padding 1) writes x[i] to
# outputs 2i-1+k, so its tap k is the sum of these 3x3 taps (zero padding agrees at both ends):
_RESIZE_TAPS = ((2,), (1, 2), (0, 1), (0,))


def _is_resize_conv(conv: nn.Module) -> bool:
    """A 3x3, stride-1, padding-1, zero-padded, ungrouped, undilated ``nn.Conv2d``."""
    if not isinstance(conv, nn.Conv2d):
        return False
    shape = (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode)
    return shape == ((3, 3), (1, 1), (1, 1), (1, 1), 1, "zeros")


def resize_taps(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernels (C_out, C_in, 3, 3) -> the (C_in, C_out, 4, 4) stride-2 transposed-convolution
    kernels that equal nearest 2x doubling followed by them (differentiable: a fixed linear map)."""
    a = torch.zeros(4, 3, dtype=weight.dtype, device=weight.device)  # a[k, d] = 1: tap d feeds tap k
    for k, taps in enumerate(_RESIZE_TAPS):
        a[k, list(taps)] = 1.0
    return torch.einsum("kd,oide,le->iokl", a, weight, a)


def resize_conv2d(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(nearest_2x(x))`` computed as one stride-2 transposed convolution (:func:`resize_taps`):
    the same function and gradients up to float rounding, 4 instead of 9 taps per output pixel
    and no upsampled intermediate (4x the input's bytes)."""
    w = resize_taps(conv.weight)
    if x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4:
        w = w.contiguous(memory_format=torch.channels_last)
    return F.conv_transpose2d(x, w, conv.bias, stride=2, padding=1)


def resize_conv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The ``nn.ConvTranspose2d`` (stride 2, kernel 4, padding 1) equal to nearest 2x upsampling
    followed by ``conv`` (3x3, stride 1, padding 1, zero padding, no groups or dilation): an
    inference copy with the weights of :func:`resize_taps`.

    Raises:
        ValueError: naming what differs when ``conv`` is not such a convolution.
    """
    if not _is_resize_conv(conv):
        raise ValueError(f"need a 3x3 stride-1 padding-1 zero-padded ungrouped convolution, got {conv}")
    w = conv.weight.detach()
    up = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, 4, 2, 1, bias=conv.bias is not None)
    up = up.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        up.weight.copy_(resize_taps(w))
        if conv.bias is not None:
            up.bias.copy_(conv.bias.detach())  # type: ignore[union-attr]
    return up


class NoiseInjection(nn.Module):
    """Adds a learned per-channel mix of noise maps to a feature map (StyleGAN's noise inputs,
    with several maps instead of one): ``x + conv1x1(noise)``.

    The mix starts at zero, so a fresh layer changes nothing and the generator learns how much
    stochastic detail each channel takes.

    Args:
        channels: C of the features.
        n_maps: M noise maps per sample.
        gain: the mix used is ``gain`` x the stored weight, a learning-rate multiplier for it.
    """

    def __init__(self, channels: int, n_maps: int, gain: float = 1.0) -> None:
        super().__init__()
        self.n_maps = n_maps
        self.gain = gain
        self.weight = nn.Parameter(torch.zeros(channels, n_maps))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Args: x (B, C, H, W); noise (B, M, H, W). Returns: (B, C, H, W)."""
        if noise is None or noise.shape != (x.shape[0], self.n_maps, *x.shape[2:]):
            got = None if noise is None else tuple(noise.shape)
            raise ValueError(f"noise must be ({x.shape[0]}, {self.n_maps}, {x.shape[2]}, {x.shape[3]}), got {got}")
        mix = self.weight * self.gain
        return x + F.conv2d(noise.to(x.dtype), mix.to(x.dtype)[:, :, None, None])


def run_fusing_resize(seq: nn.Sequential, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``seq(x)``, with each (nearest 2x ``nn.Upsample``, 3x3 ``nn.Conv2d``) pair run as one
    :func:`resize_conv2d`: the modules (and checkpoints) keep the resize form, the arithmetic is
    the transposed convolution's (2.25x less in those layers, forward and backward).
    :class:`NoiseInjection` layers get ``noise``."""
    for m, resize in _resize_pairs(seq):
        if isinstance(m, NoiseInjection):
            x = m(x, noise)
        else:
            x = resize_conv2d(x, m) if resize else m(x)  # type: ignore[arg-type]
    return x


def fold_resize_convs(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with every (nearest 2x ``nn.Upsample``, 3x3 ``nn.Conv2d``) pair replaced by its
    :func:`resize_conv_as_transposed`; other layers are kept as they are."""
    return nn.Sequential(*(resize_conv_as_transposed(m) if resize else m for m, resize in _resize_pairs(seq)))  # type: ignore[arg-type]


def _resize_pairs(seq: nn.Sequential) -> Iterator[tuple[nn.Module, bool]]:
    """``seq``'s layers in order as (module, False), except that a nearest doubling followed by a
    3x3 convolution comes as one (that convolution, True)."""
    mods = list(seq)
    i = 0
    while i < len(mods):
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if _is_nearest_doubling(mods[i]) and nxt is not None and _is_resize_conv(nxt):
            yield nxt, True
            i += 2
        else:
            yield mods[i], False
            i += 1


def _is_nearest_doubling(m: nn.Module) -> bool:
    if not isinstance(m, nn.Upsample) or m.mode != "nearest" or m.size is not None:
        return False
    factor = m.scale_factor if isinstance(m.scale_factor, tuple) else (m.scale_factor, m.scale_factor)
    return all(f is not None and float(f) == 2.0 for f in factor)
