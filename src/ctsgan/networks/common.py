"""What the 2D (CT-SGAN) and 3D (baseline GAN) networks share: one size rule, one width pyramid,
one BatchNorm-folding path."""

from __future__ import annotations

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
