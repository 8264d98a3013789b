"""What the 2D (CT-SGAN) and 3D (baseline GAN) networks share: one size rule, one width pyramid,
one BatchNorm-folding path."""

from __future__ import annotations

import torch
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
# outputs 2i-1+k, so its tap k sums these 3x3 taps (zero padding agrees at both ends):
_RESIZE_TAPS = ((2,), (1, 2), (0, 1), (0,))


def resize_conv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The stride-2 transposed convolution (kernel 4, padding 1) equal to nearest 2x upsampling
    followed by ``conv`` (3x3, stride 1, padding 1, zero padding, no groups or dilation).

    Same function up to float rounding, without the upsampled intermediate (4x the input's
    bytes) and with 4 instead of 9 taps per output pixel: 2.25x less arithmetic.

    Raises:
        ValueError: naming what differs when ``conv`` is not such a convolution.
    """
    shape = (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode)
    if shape != ((3, 3), (1, 1), (1, 1), (1, 1), 1, "zeros"):
        raise ValueError(f"need a 3x3 stride-1 padding-1 zero-padded ungrouped convolution, got {conv}")
    w = conv.weight.detach()  # (C_out, C_in, 3, 3)
    taps = torch.stack([w[..., list(rows), :].sum(-2) for rows in _RESIZE_TAPS], dim=-2)  # (C_out, C_in, 4, 3)
    taps = torch.stack([taps[..., list(cols)].sum(-1) for cols in _RESIZE_TAPS], dim=-1)  # (C_out, C_in, 4, 4)
    up = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, 4, 2, 1, bias=conv.bias is not None)
    up = up.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        up.weight.copy_(taps.transpose(0, 1))  # transposed convolutions store (C_in, C_out, kH, kW)
        if conv.bias is not None:
            up.bias.copy_(conv.bias.detach())  # type: ignore[union-attr]
    return up


def fold_resize_convs(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with every (nearest 2x ``nn.Upsample``, 3x3 ``nn.Conv2d``) pair replaced by its
    :func:`resize_conv_as_transposed`; other layers are kept as they are."""
    mods, out, i = list(seq), list[nn.Module](), 0
    while i < len(mods):
        m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        if _is_nearest_doubling(m) and isinstance(nxt, nn.Conv2d) and nxt.kernel_size == (3, 3):
            out.append(resize_conv_as_transposed(nxt))
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out)


def _is_nearest_doubling(m: nn.Module) -> bool:
    if not isinstance(m, nn.Upsample) or m.mode != "nearest" or m.size is not None:
        return False
    factor = m.scale_factor if isinstance(m.scale_factor, tuple) else (m.scale_factor, m.scale_factor)
    return all(f is not None and float(f) == 2.0 for f in factor)
