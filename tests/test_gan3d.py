"""The 3D DCGAN baseline networks (ctsgan.networks.gan3d): shapes, size rules, widths, gradients."""

from __future__ import annotations

import pytest
import torch

from ctsgan.networks.gan3d import Discriminator3D, Generator3D, level_channels, seed_size_and_levels


@pytest.mark.parametrize(
    ("size", "expected"),
    [(8, (4, 1)), (16, (4, 2)), (24, (6, 2)), (32, (4, 3)), (128, (4, 5)), (224, (7, 5)), (20, (5, 2))],
)
def test_seed_size_and_levels_by_hand(size: int, expected: tuple[int, int]) -> None:
    s0, k = seed_size_and_levels(size)
    assert (s0, k) == expected
    assert s0 * 2**k == size


@pytest.mark.parametrize("size", [4, 7, 9, 50, 100, 18])
def test_bad_sizes_are_value_errors(size: int) -> None:
    with pytest.raises(ValueError, match="s0 \\* 2\\^k"):
        Generator3D(size)
    with pytest.raises(ValueError, match="s0 \\* 2\\^k"):
        Discriminator3D(size)


def test_level_channels_pyramid_and_cap() -> None:
    assert level_channels(3, 16, 48) == [48, 32, 16]
    assert level_channels(5, 16, 1024) == [256, 128, 64, 32, 16]
    with pytest.raises(ValueError):
        level_channels(3, 32, 16)


@pytest.mark.parametrize(
    ("size", "latent", "base", "cap", "batch"),
    [(16, 32, 8, 64, 2), (24, 16, 4, 16, 3), (32, 64, 16, 128, 2)],
)
def test_shapes_range_and_gradients(size: int, latent: int, base: int, cap: int, batch: int) -> None:
    torch.manual_seed(0)
    g, d = Generator3D(size, latent, base, cap), Discriminator3D(size, base, cap)
    x = g(torch.randn(batch, latent))
    assert x.shape == (batch, 1, size, size, size)
    assert float(x.detach().abs().max()) <= 1.0
    logits = d(x)
    assert logits.shape == (batch,)
    logits.sum().backward()
    # Every parameter of both networks is reached by the adversarial gradient.
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_widths_match_the_pyramid() -> None:
    g, d = Generator3D(32, 8, base_channels=4, max_channels=12), Discriminator3D(32, base_channels=4, max_channels=12)
    g_out = [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    d_out = [m.out_channels for m in d.modules() if isinstance(m, torch.nn.Conv3d)]
    # 32 = 4 * 2^3: seed (4^3) 12 (cap of 16), 8^3: 8, 16^3: 4, output 1 channel at 32^3.
    assert g_out == [12, 8, 4, 1]
    # The mirror image, then the logit conv.
    assert d_out == [4, 8, 12, 1]


@pytest.mark.parametrize(("size", "base", "cap"), [(128, 16, 256), (224, 4, 32)])
def test_large_cubes_forward_batch_one(size: int, base: int, cap: int) -> None:
    """paper128 widths at 128^3 (and a thin 224^3) produce full cubes; no training, batch 1."""
    g, d = Generator3D(size, 128, base, cap).eval(), Discriminator3D(size, base, cap)
    with torch.no_grad():
        x = g(torch.randn(1, 128))
        assert x.shape == (1, 1, size, size, size)
        assert d(x).shape == (1,)


def test_bad_inputs_name_the_expected_shape() -> None:
    g, d = Generator3D(16, 8, 4, 16), Discriminator3D(16, 4, 16)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        g(torch.randn(2, 9))
    with pytest.raises(ValueError, match="16, 16, 16"):
        d(torch.randn(2, 1, 16, 16, 15))


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    a = Generator3D(16, 8, 4, 16).state_dict()
    torch.manual_seed(3)
    b = Generator3D(16, 8, 4, 16).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
