"""3D SqueezeNet v1.1 (the layout of Efficient-3DCNNs, Kopuklu et al. 2019) for CT volumes.

Layout (channel counts at ``width=1``; ``/2`` = stride 2 on every axis)::

    stem     Conv3d 3x3x3, 1 -> 64, stride ``stem_stride`` (/2)  + BN + ReLU
    pool     MaxPool3d 3x3x3 /2
    fire2    Fire(64  -> s16,  e64+64)            -> 128
    fire3    Fire(128 -> s16,  e64+64)  + bypass  -> 128
    pool     MaxPool3d 3x3x3 /2
    fire4    Fire(128 -> s32,  e128+128)          -> 256
    fire5    Fire(256 -> s32,  e128+128) + bypass -> 256
    pool     MaxPool3d 3x3x3 /2
    fire6    Fire(256 -> s48,  e192+192)          -> 384
    fire7    Fire(384 -> s48,  e192+192) + bypass -> 384
    fire8    Fire(384 -> s64,  e256+256)          -> 512
    fire9    Fire(512 -> s64,  e256+256) + bypass -> 512
    head     Dropout -> Conv3d 1x1x1 512 -> num_classes -> ReLU -> global average pool

A Fire module squeezes with a 1x1x1 conv, then expands with a 1x1x1 and a 3x3x3 conv whose
outputs are concatenated; a bypass (residual) adds the input where in/out channels match
(fires 3, 5, 7, 9 as in Efficient-3DCNNs). Each conv is followed by BatchNorm3d.

Differences from the video model, all stated: one input channel (CT), the stem stride is
isotropic (2, 2, 2) by default because CT axes are all spatial (the video model uses (1, 2, 2)
to keep time), global pooling is adaptive so any input size >= 16^3 works, and ``width``
scales every channel count (1.0 = the published network; smaller for CPU runs).
The output is ``num_classes`` logits (2 by default: use softmax cross-entropy; class 1 =
"nodule present"). Inputs are expected in [0, 1] (HU window mapped linearly), see
:func:`ctsgan.experiments.nodule_detection.hu_to_classifier_input`.
"""

from __future__ import annotations

import torch
from torch import nn


class Fire3d(nn.Module):
    """Fire module: squeeze 1x1x1, expand 1x1x1 (+) 3x3x3 concatenated, optional bypass.

    Args:
        in_ch: input channels C_in.
        squeeze_ch: channels after the squeeze conv.
        expand1_ch: channels of the 1x1x1 expand branch.
        expand3_ch: channels of the 3x3x3 expand branch.
        bypass: add the input to the output (needs ``in_ch == expand1_ch + expand3_ch``).
    """

    def __init__(self, in_ch: int, squeeze_ch: int, expand1_ch: int, expand3_ch: int, bypass: bool = False) -> None:
        super().__init__()
        out_ch = expand1_ch + expand3_ch
        if bypass and in_ch != out_ch:
            raise ValueError(f"bypass needs in_ch == expand1_ch + expand3_ch, got {in_ch} != {out_ch}")
        self.bypass = bypass
        self.squeeze = nn.Sequential(
            nn.Conv3d(in_ch, squeeze_ch, kernel_size=1), nn.BatchNorm3d(squeeze_ch), nn.ReLU(inplace=True)
        )
        self.expand1 = nn.Sequential(nn.Conv3d(squeeze_ch, expand1_ch, kernel_size=1), nn.BatchNorm3d(expand1_ch))
        self.expand3 = nn.Sequential(
            nn.Conv3d(squeeze_ch, expand3_ch, kernel_size=3, padding=1), nn.BatchNorm3d(expand3_ch)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, D, H, W) -> (B, expand1_ch + expand3_ch, D, H, W)."""
        s = self.squeeze(x)  # (B, squeeze_ch, D, H, W)
        out = torch.cat([self.expand1(s), self.expand3(s)], dim=1)  # (B, C_out, D, H, W)
        if self.bypass:
            out = out + x
        return self.act(out)


class SqueezeNet3d(nn.Module):
    """3D SqueezeNet v1.1 classifier for single-channel volumes.

    Args:
        num_classes: number of output logits (2: softmax over {no nodule, nodule}).
        in_channels: input channels (1 for CT).
        width: multiplier on every channel count (1.0 = published widths); counts are rounded
            to at least 4 and squeeze/expand ratios are kept so bypasses still match.
        dropout: dropout probability before the classifier conv (0.5 in the original).
        stem_stride: stride of the stem conv (z, y, x).

    Input (B, in_channels, D, H, W) in [0, 1] with D, H, W >= 16; output (B, num_classes) logits.
    The spatial size shrinks by ``stem_stride`` and then 2 per max-pool (three pools).
    """

    # (squeeze, expand1, expand3, bypass) for fires 2..9; a max-pool follows fire3 and fire5
    _FIRES: tuple[tuple[int, int, int, bool], ...] = (
        (16, 64, 64, False),
        (16, 64, 64, True),
        (32, 128, 128, False),
        (32, 128, 128, True),
        (48, 192, 192, False),
        (48, 192, 192, True),
        (64, 256, 256, False),
        (64, 256, 256, True),
    )
    _POOL_AFTER = (1, 3)  # indices into _FIRES after which a max-pool sits

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.5,
        stem_stride: tuple[int, int, int] = (2, 2, 2),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        def ch(n: int) -> int:
            return max(4, int(round(n * width)))

        stem_ch = ch(64)
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, stem_ch, kernel_size=3, stride=stem_stride, padding=1),
            nn.BatchNorm3d(stem_ch),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=3, stride=2, padding=1),
        ]
        c = stem_ch
        for i, (sq, e1, e3, bypass) in enumerate(self._FIRES):
            out = ch(e1) + ch(e3)
            layers.append(Fire3d(c, ch(sq), ch(e1), ch(e3), bypass=bypass and c == out))
            c = out
            if i in self._POOL_AFTER:
                layers.append(nn.MaxPool3d(kernel_size=3, stride=2, padding=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Conv3d(c, num_classes, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool3d(1),
        )
        self.num_classes = num_classes
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out) convs with zero bias, BatchNorm at identity, as Efficient-3DCNNs.

        The classifier conv uses a small normal init (std 0.01) so the initial logits are
        near zero and the first softmax is close to uniform.
        """
        final = self.classifier[1]
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                if m is final:
                    nn.init.normal_(m.weight, std=0.01)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, D, H, W) in [0, 1] -> logits (B, num_classes)."""
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, D, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[2:]) < 16:
            raise ValueError(f"spatial size must be >= 16 on every axis, got {tuple(x.shape[2:])}")
        f = self.features(x)  # (B, C_feat, D/16, H/16, W/16) with the default stem stride
        return self.classifier(f).flatten(1)  # (B, num_classes)


def make_optimizer(model: nn.Module, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam as in the paper: lr 1e-4, betas (0.9, 0.999)."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
