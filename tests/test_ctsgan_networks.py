"""CT-SGAN networks: shapes in all presets, volume assembly, chunked rendering, bad inputs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from ctsgan.networks.ctsgan import (
    SlabDiscriminator,
    SliceCodeRNN,
    SliceDiscriminator,
    SliceGenerator,
    assemble_volume,
    upsampling_plan,
    window_channels,
)
from ctsgan.training.recipes import get_recipe
from ctsgan.training.recipes.ctsgan import (
    CTSGANConfig,
    build_discriminator,
    build_generator,
    d_windows_unit,
    render_volume,
)
from training_helpers import one_thread  # noqa: F401 (fixture)


@pytest.mark.parametrize(("preset", "batch"), [("tiny", 2), ("cpu64", 2), ("paper224", 1)])
def test_network_shapes_per_preset(preset: str, batch: int) -> None:
    cfg = get_recipe("ctsgan").load_config(preset)
    assert isinstance(cfg, CTSGANConfig)
    s, t, L = cfg.size, cfg.slab_depth, cfg.size - 2
    g, d = build_generator(cfg).eval(), build_discriminator(cfg)
    with torch.no_grad():
        eps = torch.randn(batch, L, cfg.noise_dim)
        h0 = torch.randn(2, batch, cfg.rnn_hidden)
        z = g.rv(eps, h0)
        assert z.shape == (batch, L, cfg.slice_dim)  # R_v: one code per 3-slice position
        codes = g.codes(torch.randn(batch, cfg.patient_dim), eps, h0)
        assert codes.shape == (batch, L, cfg.patient_dim + cfg.slice_dim + cfg.position_dim)
        # the patient code is the same for every slice of a volume
        assert torch.equal(codes[:, 0, : cfg.patient_dim], codes[:, -1, : cfg.patient_dim])
        x = g(codes[:, 0])
        assert x.shape == (batch, 3, s, s)
        assert x.abs().max() <= 1.0
        pos = torch.randint(0, L, (batch,))
        assert d.d_slice(x, pos).shape == (batch,)
        slab_pos = torch.randint(0, L - t + 1, (batch,))
        assert d.d_slab(torch.randn(batch, 1, t, s, s), slab_pos).shape == (batch,)


@pytest.mark.parametrize(("size", "plan"), [(16, (4, 2)), (64, (4, 4)), (224, (7, 5)), (96, (6, 4))])
def test_upsampling_plan(size: int, plan: tuple[int, int]) -> None:
    assert upsampling_plan(size) == plan

pytestmark = pytest.mark.usefixtures("one_thread")


def test_upsampling_plan_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="size 9"):
        upsampling_plan(9)


def test_g_slice_224_follows_mocogan_growth() -> None:
    g = SliceGenerator(code_dim=8, size=224, base_width=4, max_width=64)
    sizes = []
    x = torch.zeros(1, 8, 1, 1)
    for m in g.main:
        x = m(x)
        if isinstance(m, torch.nn.ConvTranspose2d):
            sizes.append(x.shape[-1])
    assert sizes == [7, 14, 28, 56, 112, 224]
    assert isinstance(g.main[-1], torch.nn.Tanh)


def test_assemble_volume_by_hand() -> None:
    # 3-slice k holds slices (k, k+1, k+2); encode slice index as the pixel value
    L, h = 5, 2
    three = torch.stack([torch.stack([torch.full((h, h), float(k + c)) for c in range(3)]) for k in range(L)])
    vol = assemble_volume(three)
    assert vol.shape == (L + 2, h, h)
    assert vol[:, 0, 0].tolist() == [float(i) for i in range(L + 2)]


def test_assemble_volume_rejects_non_3_slices() -> None:
    with pytest.raises(ValueError, match=r"\(L, 3, H, W\)"):
        assemble_volume(torch.zeros(4, 2, 8, 8))


def test_render_volume_equals_assembled_3_slices_for_any_chunk() -> None:
    cfg = get_recipe("ctsgan").load_config("tiny")
    assert isinstance(cfg, CTSGANConfig)
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    vols = [render_volume(g, 21, torch.Generator().manual_seed(3), torch.device("cpu"), chunk=c) for c in (1, 4, 64)]
    assert vols[0].shape == (21, 16, 16)
    noise = torch.Generator().manual_seed(3)
    p = torch.randn(1, cfg.patient_dim, generator=noise)
    e = torch.randn(1, 19, cfg.noise_dim, generator=noise)
    h0 = torch.randn(2, 1, cfg.rnn_hidden, generator=noise)
    with torch.no_grad():
        ref = assemble_volume(g(g.codes(p, e, h0)[0]))
    for v in vols:
        torch.testing.assert_close(v, ref, rtol=0, atol=1e-5)


def test_bad_input_shapes_raise() -> None:
    with pytest.raises(ValueError, match="eps must be"):
        SliceCodeRNN(4, 8, 2)(torch.zeros(1, 5, 3), torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="x must be"):
        SliceDiscriminator(16, 14)(torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be"):
        SlabDiscriminator(16, 4)(torch.zeros(1, 1, 3, 16, 16))


def test_slice_discriminator_uses_position() -> None:
    torch.manual_seed(0)
    d = SliceDiscriminator(16, 14)
    torch.nn.init.normal_(d.embed.weight, 0, 1.0)
    x = torch.randn(1, 3, 16, 16).repeat(2, 1, 1, 1)
    out = d(x, torch.tensor([0, 13]))
    assert out[0] != out[1]  # same slice, different positions -> different scores


def test_config_rejects_slab_deeper_than_volume() -> None:
    from ctsgan.config import ConfigError

    with pytest.raises(ConfigError, match="slab_depth"):
        CTSGANConfig.from_dict({"size": 16, "slab_depth": 15})


@pytest.mark.parametrize(("upsample", "refine"), [("transposed", False), ("resize", False), ("resize", True), ("transposed", True)])
def test_inference_generator_matches_eval_mode(upsample: str, refine: bool) -> None:
    from ctsgan.networks.ctsgan import CodeProjection, fold_batchnorm

    torch.manual_seed(0)
    g = SliceGenerator(code_dim=12, size=32, base_width=4, max_width=16, upsample=upsample, refine=refine)
    assert any(isinstance(m, torch.nn.Upsample) for m in g.modules()) == (upsample == "resize")
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(3):
            g.train()(torch.randn(8, 12))
    g.eval()
    fast = fold_batchnorm(g)
    assert isinstance(fast.main[0], CodeProjection)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.Upsample) for m in fast.modules())
    x = torch.randn(5, 12)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), g(x), rtol=0, atol=1e-5)
        fast_cl = fold_batchnorm(g).to(memory_format=torch.channels_last)
        torch.testing.assert_close(fast_cl(x), g(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("c_in", "c_out", "h", "w", "bias"), [(5, 3, 6, 8, True), (4, 7, 1, 1, False), (3, 2, 9, 4, True)])
def test_resize_conv_as_transposed_equals_upsample_then_conv(c_in: int, c_out: int, h: int, w: int, bias: bool) -> None:
    """Nearest 2x doubling + 3x3 convolution == the derived stride-2 transposed convolution, at
    float64 rounding, borders included (odd sizes, a 1x1 input)."""
    from ctsgan.networks.common import resize_conv_as_transposed

    torch.manual_seed(c_in)
    conv = torch.nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias).double()
    x = torch.randn(2, c_in, h, w, dtype=torch.float64)
    ref = conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    up = resize_conv_as_transposed(conv)
    assert isinstance(up, torch.nn.ConvTranspose2d) and up.weight.shape == (c_in, c_out, 4, 4)
    torch.testing.assert_close(up(x), ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="3x3 stride-1 padding-1"):
        resize_conv_as_transposed(torch.nn.Conv2d(c_in, c_out, 3, 1, 0))


@pytest.mark.parametrize("refine", [False, True])
def test_resize_generator_runs_its_pairs_fused_with_the_same_function_and_gradients(refine: bool) -> None:
    """G_slice with ``upsample: resize`` computes each (Upsample, Conv2d) pair as one transposed
    convolution: outputs and weight / input gradients equal running the modules one by one
    (float64), and no upsampled tensor is made (the Upsample modules are never called)."""
    torch.manual_seed(3)
    g = SliceGenerator(code_dim=6, size=16, base_width=3, max_width=8, upsample="resize", refine=refine).double().train()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    calls: list[int] = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in g.modules() if isinstance(m, torch.nn.Upsample)]
    fused = g(x)
    for h in hooks:
        h.remove()
    assert calls == [] and fused.shape == (4, 3, 16, 16)
    grads = torch.autograd.grad(fused.square().sum(), [x, *g.parameters()])
    ref_g = copy.deepcopy(g)
    ref = ref_g.main(x[:, :, None, None])  # module by module: nearest doubling, then the 3x3 conv
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *ref_g.parameters()])
    torch.testing.assert_close(fused, ref, rtol=0, atol=1e-12)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_refine_adds_a_full_resolution_block_from_the_config() -> None:
    """``g_refine``: a BatchNorm runs on base-width maps at full resolution and a 3x3 convolution
    maps them to the 3-slice; without it the last layer writes the output from half resolution."""
    seen: dict[bool, list[tuple[int, int]]] = {}
    for refine in (False, True):
        cfg = CTSGANConfig.from_dict({"size": 32, "slab_depth": 4, "g_width": 4, "g_max_width": 16,
                                      "g_upsample": "resize", "g_refine": refine})
        gen = build_generator(cfg)
        shapes: list[tuple[int, int]] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o, s=shapes: s.append((o.shape[1], o.shape[-1])))
                 for m in gen.g_slice.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        out = gen(torch.randn(2, gen.g_slice.code_dim))
        for h in hooks:
            h.remove()
        assert out.shape == (2, 3, 32, 32)
        last = [m for m in gen.g_slice.main if isinstance(m, torch.nn.Conv2d)][-1]
        assert (last.in_channels, last.out_channels, last.kernel_size) == (4, 3, (3, 3))  # from the finest width
        seen[refine] = shapes
    assert (4, 32) in seen[True] and all(size < 32 for _, size in seen[False])


def test_resize_upsampling_has_no_checkerboard_response() -> None:
    """A constant feature map through a "resize" layer stays constant (away from the zero-padded
    border): nearest doubling then a 3x3 convolution has no uneven overlap. A 4x4 stride-2
    transposed convolution with random weights turns it into a period-2 pattern."""
    torch.manual_seed(0)
    resize = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"), torch.nn.Conv2d(4, 1, 3, 1, 1, bias=False))
    transposed = torch.nn.ConvTranspose2d(4, 1, 4, 2, 1, bias=False)
    x = torch.ones(1, 4, 8, 8)
    with torch.no_grad():
        r, t = resize(x)[0, 0, 2:-2, 2:-2], transposed(x)[0, 0, 2:-2, 2:-2]
    assert float(r.std()) < 1e-6
    assert float(t.std()) > 1e-3


def test_window_channels_by_hand() -> None:
    """A soft-tissue window [-200, 200] HU: -200 -> -1, 0 -> 0, 200 -> 1, clamped outside, gain 1624/400."""
    from ctsgan.data.hu import hu_to_unit

    cfg = CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "d_windows": [[-200, 200]]})
    (win,) = d_windows_unit(cfg)
    hu = torch.tensor([-1000.0, -200.0, 0.0, 100.0, 200.0, 600.0])
    x = hu_to_unit(hu)[None, None].requires_grad_(True)  # (1, 1, 6)
    out = window_channels(x, [win])
    assert out.shape == (1, 2, 6)
    assert torch.equal(out[:, :1], x)
    torch.testing.assert_close(out[0, 1], torch.tensor([-1.0, -1.0, 0.0, 0.5, 1.0, 1.0]), atol=1e-5, rtol=0)
    out[:, 1].sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad[0, 0, 2:4], torch.full((2,), 1624.0 / 400.0))  # magnified inside
    assert float(x.grad[0, 0, 0]) == 0.0 and float(x.grad[0, 0, 5]) == 0.0


@pytest.mark.parametrize("which", ["slice", "slab"])
def test_discriminators_see_their_windows(which: str) -> None:
    """A windowed D's first layer takes one extra input channel per image channel and window;
    checkpoints of windowed Ds reload as they are (not taken for position planes)."""
    cfg = CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "d_windows": [[-200, 200]], "d_position_channels": 4,
                                  "slab_position": True})
    torch.manual_seed(0)
    d = build_discriminator(cfg)
    part = d.d_slice if which == "slice" else d.d_slab
    assert part.features[0].weight.shape[1] == (6 if which == "slice" else 2)
    fresh = build_discriminator(cfg)
    fresh.load_state_dict(d.state_dict())
    assert torch.equal(getattr(fresh, "d_" + which).features[0].weight, part.features[0].weight)
    plain = build_discriminator(CTSGANConfig.from_dict({"size": 16, "slab_depth": 4}))
    assert getattr(plain, "d_" + which).features[0].weight.shape[1] == (3 if which == "slice" else 1)


def test_config_rejects_windows_outside_the_hu_window() -> None:
    from ctsgan.config import ConfigError

    with pytest.raises(ConfigError, match="d_windows"):
        CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "d_windows": [[700, 900]]})
    with pytest.raises(ConfigError, match="d_windows"):
        CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "d_windows": [[200, -200]]})


def test_reduced_spectrum_by_hand() -> None:
    """A constant image has power in ring 0 only; a cosine of k cycles per image along x puts all
    of its (non-DC) power in ring k, at the value worked out from the orthonormal DFT."""
    import math

    from ctsgan.networks.ctsgan import radial_bins, reduced_spectrum

    s = 16
    bins = radial_bins(s)
    assert bins.shape == (s * (s // 2 + 1), s // 2)
    torch.testing.assert_close(bins.sum(0), torch.ones(s // 2))
    empty = math.log(1e-6)
    flat = reduced_spectrum(torch.full((1, 1, s, s), 0.5), bins)[0]
    # DC of the orthonormal DFT: sum / s = 0.5 * s; ring 0 holds that one frequency
    torch.testing.assert_close(flat[0], torch.tensor(math.log((0.5 * s) ** 2 + 1e-6)))
    torch.testing.assert_close(flat[1:], torch.full((s // 2 - 1,), empty), atol=1e-3, rtol=0)
    k = 3
    x = torch.cos(2 * math.pi * k * torch.arange(s) / s).expand(s, s).reshape(1, 1, s, s)
    spec = reduced_spectrum(x, bins)[0]
    # |X(0, k)|^2 = (s^2 / 2 / s)^2 = (s / 2)^2 (the conjugate at -k is not in the rfft half-plane);
    # ring 3 averages it over its count of half-plane frequencies
    ring = int((bins[:, k] > 0).sum())
    torch.testing.assert_close(spec[k], torch.tensor(math.log((s / 2) ** 2 / ring + 1e-6)), rtol=1e-4, atol=1e-4)
    others = [i for i in range(s // 2) if i != k]
    assert float(spec[others].max()) < empty + 1e-3


def _plain_and_spectral(which: str, option: str) -> tuple[Any, Any]:
    """D_slice or D_slab (16^2, slab depth 4, narrow) without and with its spectral score ``option``;
    the spectral one loads the plain one's weights, so the score's weight is its only extra."""
    widths = {f"d_{which}_width": 4, f"d_{which}_max_width": 8}
    base = CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, **widths})
    torch.manual_seed(0)
    plain = getattr(build_discriminator(base), "d_" + which)
    spectral = getattr(build_discriminator(CTSGANConfig.from_dict({**base.model_dump(), option: True})), "d_" + which)
    assert spectral.spectral is not None and plain.spectral is None
    assert spectral.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["spectral.weight"]
    return plain, spectral


def test_spectral_slice_discriminator_starts_plain_and_sees_speckle() -> None:
    """``d_spectral``: a zero-initialised spectral score (D starts as the plain D with the same
    weights), which reacts to high-frequency speckle once trained, and gradients reach the input."""
    plain, spectral = _plain_and_spectral("slice", "d_spectral")
    smooth = torch.zeros(2, 3, 16, 16)
    speckle = smooth + 0.3 * torch.sign(torch.randn(2, 3, 16, 16))
    pos = torch.tensor([0, 5])
    with torch.no_grad():
        torch.testing.assert_close(spectral(speckle, pos), plain(speckle, pos))
        spectral.spectral.weight.fill_(1.0)  # type: ignore[union-attr]
        gap_spectral = spectral(speckle, pos) - spectral(smooth, pos)
        gap_plain = plain(speckle, pos) - plain(smooth, pos)
    assert float((gap_spectral - gap_plain).min()) > 10.0  # high rings go from log(1e-6) to O(log 0.1)
    x = speckle.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(spectral(x, pos).sum(), x)
    assert float(g.abs().sum()) > 0


def test_z_structure_spectrum_by_hand() -> None:
    """A slab whose slices are all the same has no power at any distance; a brightness ramp along z
    (slice k = c * k) has only DC power, (d * c * s)^2 at distance d; a cosine of k cycles per image
    that moves one pixel per slice has, at distance d, the power of a cosine of amplitude
    2 sin(pi k d / s) in ring k only (distance-major order)."""
    import math

    from ctsgan.networks.ctsgan import radial_bins, z_structure_spectrum

    s, t = 16, 5
    bins = radial_bins(s)
    empty = math.log(1e-6)
    streaks = torch.randn(1, 1, 1, s, s).expand(2, 1, t, s, s)
    spec = z_structure_spectrum(streaks, bins)
    assert spec.shape == (2, (t - 1) * (s // 2))
    torch.testing.assert_close(spec, torch.full_like(spec, empty), atol=1e-3, rtol=0)
    c = 0.05
    ramp = (c * torch.arange(t, dtype=torch.float32))[None, None, :, None, None].expand(1, 1, t, s, s)
    spec = z_structure_spectrum(ramp, bins)[0].reshape(t - 1, s // 2)
    for d in range(1, t):
        torch.testing.assert_close(spec[d - 1, 0], torch.tensor(math.log((d * c * s) ** 2 + 1e-6)))
    torch.testing.assert_close(spec[:, 1:], torch.full((t - 1, s // 2 - 1), empty), atol=1e-3, rtol=0)
    k = 2
    cols = torch.arange(s, dtype=torch.float32)
    moving = torch.stack([torch.cos(2 * math.pi * k * (cols - z) / s).expand(s, s) for z in range(t)])[None, None]
    spec = z_structure_spectrum(moving, bins)[0].reshape(t - 1, s // 2)
    ring = int((bins[:, k] > 0).sum())
    for d in range(1, t):
        amp = 2 * math.sin(math.pi * k * d / s)
        torch.testing.assert_close(spec[d - 1, k], torch.tensor(math.log((amp * s / 2) ** 2 / ring + 1e-6)), rtol=1e-4, atol=1e-4)
    others = [i for i in range(s // 2) if i != k]
    assert float(spec[:, others].max()) < empty + 1e-3


def test_spectral_slab_discriminator_starts_plain_and_sees_streaks() -> None:
    """``d_slab_spectral``: D_slab's z-structure score starts at zero (the plain D with the same
    weights); once weighted it tells detail that changes along z from detail repeated on every slice
    (the streaked volume) far more than the plain D does, and gradients reach the input."""
    plain, spectral = _plain_and_spectral("slab", "d_slab_spectral")
    assert spectral.spectral is not None and spectral.spectral.in_features == 3 * 8
    changing = 0.3 * torch.randn(2, 1, 4, 16, 16)
    streaked = changing[:, :, :1].expand(-1, -1, 4, -1, -1).contiguous()  # slice 0 on every slice
    with torch.no_grad():
        torch.testing.assert_close(spectral(changing), plain(changing))
        spectral.spectral.weight.fill_(1.0)  # type: ignore[union-attr]
        gap_spectral = spectral(changing) - spectral(streaked)
        gap_plain = plain(changing) - plain(streaked)
    assert float((gap_spectral - gap_plain).min()) > 100.0  # 24 features from log(1e-6) to O(log 0.1)
    x = changing.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(spectral(x).sum(), x)
    assert float(g.abs().sum()) > 0


BEYOND_THE_PAPER = ("position_dim", "slab_position", "mbstd_group", "d_position_channels", "shared_positions",
                    "diversity_weight", "reuse_fakes", "g_upsample", "g_refine", "g_noise", "d_windows", "d_spectral",
                    "d_slab_spectral", "overlap_weight", "g_noise_smooth", "neighbour_codes", "augment", "hu_knots",
                    "hu_calibration")


def test_paper_preset_has_every_option_beyond_the_paper_off() -> None:
    """The ``paper`` preset is the paper's method: each key beyond it keeps the config's off value
    (the class default); ``cpu64`` turns the measured ones on, among them the spectral D score."""
    recipe = get_recipe("ctsgan")
    paper, cpu64 = recipe.load_config("paper"), recipe.load_config("cpu64")
    off = CTSGANConfig.model_fields
    for key in BEYOND_THE_PAPER:
        assert getattr(paper, key) == (off[key].default if off[key].default_factory is None else off[key].default_factory()), key
    assert cpu64.d_spectral and cpu64.shared_positions and cpu64.g_upsample == "resize" and not cpu64.g_refine
    assert cpu64.hu_calibration and not cpu64.hu_knots
