"""CT-SGAN's core mechanisms each do their job (the mutation check breaks each one on purpose).

Each test names the mechanism it guards; ``scripts/mutation_check.py`` applies a named break to a
copy of the source and requires this file (or the learning test) to fail:

- R_v's codes depend on its per-position noise, and reach G;
- the patient code reaches G and is constant over the slices of one volume;
- D_slice (and a position-conditioned D_slab) score depends on the position given;
- both discriminator terms enter the D and G losses;
- a training slab is T consecutive slices of one volume, for real and generated data alike;
- 3-slices assemble into a volume in slice order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsgan.networks.common import NoiseInjection
from ctsgan.networks.ctsgan import VolumeHead, three_slice_noise
from ctsgan.training.recipe import GanNetworks
from ctsgan.training.recipes import get_recipe
from ctsgan.training.recipes.ctsgan import (
    CTSGANConfig,
    CTSGANSampler,
    build_discriminator,
    build_generator,
    render_training_views,
    render_volume,
    render_volumes,
)
from training_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**over: object) -> CTSGANConfig:
    cfg = get_recipe("ctsgan").load_config("tiny")
    assert isinstance(cfg, CTSGANConfig)
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def _latents(cfg: CTSGANConfig, seed: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, cfg.patient_dim, generator=g),
        torch.randn(1, length, cfg.noise_dim, generator=g),
        torch.randn(2, 1, cfg.rnn_hidden, generator=g),
    )


def _volume(gen: torch.nn.Module, p: torch.Tensor, e: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        three = gen(gen.codes(p, e, h0)[0])  # (L, 3, S, S)
    return three[:, 1]  # centre slices (L, S, S)


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean() / (a.abs().mean() + 1e-12))


@pytest.fixture
def gen() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(_cfg()).eval()


def test_rv_noise_changes_the_slice_codes_and_the_slices(gen: torch.nn.Module) -> None:
    """R_v: other eps (same patient code, same h0) -> other slice codes -> other slices."""
    cfg = _cfg()
    p, e, h0 = _latents(cfg, 0, 14)
    e2 = torch.randn(e.shape, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        z1, z2 = gen.rv(e, h0), gen.rv(e2, h0)
    # untrained LSTM + projection: codes move by a sizeable fraction of their size (measured ~0.5)
    assert _relative_change(z1, z2) > 0.05
    assert _relative_change(_volume(gen, p, e, h0), _volume(gen, p, e2, h0)) > 1e-3


def test_rv_codes_differ_between_positions(gen: torch.nn.Module) -> None:
    """R_v gives one code per position, not one code for all (the slices of a volume differ)."""
    cfg = _cfg()
    p, e, h0 = _latents(cfg, 1, 14)
    with torch.no_grad():
        z = gen.rv(e, h0)[0]  # (L, Z)
    spread = (z - z.mean(0)).abs().mean() / z.abs().mean()
    assert spread > 0.05
    vol = _volume(gen, p, e, h0)
    assert _relative_change(vol[1:], vol[:-1]) > 0.01  # untrained G: outputs are small, compare relatively


def test_patient_code_reaches_every_slice(gen: torch.nn.Module) -> None:
    """Another patient code (same R_v noise) changes the volume; one code is shared by all slices."""
    cfg = _cfg()
    p, e, h0 = _latents(cfg, 2, 14)
    p2 = torch.randn(p.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        codes = gen.codes(p, e, h0)  # (1, L, C)
    assert torch.equal(codes[0, :, : cfg.patient_dim], p.expand(14, -1))
    assert _relative_change(_volume(gen, p, e, h0), _volume(gen, p2, e, h0)) > 1e-3


def test_position_features_reach_g() -> None:
    """With ``position_dim``, the codes end with the position features of each slice."""
    from ctsgan.networks.ctsgan import position_features

    cfg = _cfg(position_dim=4)
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    p, e, h0 = _latents(cfg, 3, 14)
    with torch.no_grad():
        codes = g.codes(p, e, h0)[0]  # (L, C)
    torch.testing.assert_close(codes[:, -4:], position_features(14, 4))
    assert codes.shape[1] == cfg.patient_dim + cfg.slice_dim + 4
    pf = position_features(5, 4)
    assert pf.shape == (5, 4)
    torch.testing.assert_close(pf[:, 0], torch.sin(torch.pi * torch.linspace(0, 1, 5)))  # sin(pi t)
    torch.testing.assert_close(pf[:, 3], torch.cos(2 * torch.pi * torch.linspace(0, 1, 5)))  # cos(2 pi t)


@pytest.mark.parametrize("which", ["slice", "slab"])
def test_discriminator_score_depends_on_position(which: str) -> None:
    """The projection term (position embedding . features) alone makes the score position-dependent."""
    cfg = _cfg(slab_position=True, d_position_channels=0)
    torch.manual_seed(0)
    d = build_discriminator(cfg)
    s, t = cfg.size, cfg.slab_depth
    if which == "slice":
        x = torch.randn(1, 3, s, s).repeat(2, 1, 1, 1)
        out = d.d_slice(x, torch.tensor([0, cfg.size - 3]))
    else:
        x = torch.randn(1, 1, t, s, s).repeat(2, 1, 1, 1, 1)
        out = d.d_slab(x, torch.tensor([0, cfg.size - 2 - t]))
    # same input at two positions: the projection term differs (embeddings init N(0, 0.02))
    assert abs(float((out[0] - out[1]).detach())) > 1e-6


def _nets(cfg: CTSGANConfig) -> GanNetworks:
    torch.manual_seed(0)
    return GanNetworks(build_generator(cfg), build_discriminator(cfg))


def _real_batch(cfg: CTSGANConfig, batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    n_pos, t, s = cfg.size - 2, cfg.slab_depth, cfg.size
    return {
        "slab": torch.rand(batch, 1, t, s, s, generator=g) * 2 - 1,
        "slab_positions": torch.randint(0, n_pos - t + 1, (batch,), generator=g),
        "slices": torch.rand(batch * cfg.n_slices, 3, s, s, generator=g) * 2 - 1,
        "positions": torch.randint(0, n_pos, (batch * cfg.n_slices,), generator=g),
    }


@pytest.mark.parametrize("part", ["d_slice", "d_slab"])
def test_both_discriminators_are_trained(part: str) -> None:
    """The D loss has a D_slice and a D_slab term: each D gets gradients from it."""
    cfg = _cfg()
    nets = _nets(cfg)
    recipe = get_recipe("ctsgan")
    loss, _ = recipe.d_step(nets, _real_batch(cfg, 2), cfg, torch.Generator().manual_seed(0), penalty_weight=1.0)
    loss.backward()
    grads = [p.grad for p in getattr(nets.discriminator, part).parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize("part", ["d_slice", "d_slab"])
def test_generator_loss_listens_to_both_discriminators(part: str) -> None:
    """G's loss changes when either discriminator changes (both terms are in it)."""
    cfg = _cfg()
    nets = _nets(cfg)
    recipe = get_recipe("ctsgan")
    loss1, _ = recipe.g_step(nets, 2, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        lin = getattr(nets.discriminator, part).linear
        lin.bias.add_(3.0)  # a much more confident "real" verdict from this D alone
    loss2, _ = recipe.g_step(nets, 2, cfg, torch.Generator().manual_seed(0))
    assert float((loss1 - loss2).detach()) > 0.1


def _loud_noise(g: torch.nn.Module) -> torch.nn.Module:
    """``g`` with its noise-injection mixes drawn N(0, 1) (they start at 0: the noise would not show)."""
    layers = [m for m in g.modules() if isinstance(m, NoiseInjection)]
    assert layers, "no NoiseInjection layer: is g_noise on?"
    with torch.no_grad():
        for m in layers:
            m.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    return g


@pytest.mark.parametrize("g_noise", [False, True])
def test_generated_slab_is_consecutive_slices_of_one_volume(g_noise: bool) -> None:
    """render_training_views' slab = slices k0+1 .. k0+T of the volume the same latents make
    (with ``g_noise``: the same noise volume, each 3-slice with its own slices' maps)."""
    cfg = _cfg(g_noise=g_noise)
    torch.manual_seed(0)
    g = build_generator(cfg).eval()  # eval: BatchNorm does not mix the two renderings
    if g_noise:
        _loud_noise(g)
    n_pos = cfg.size - 2
    views = render_training_views(g, cfg, 1, torch.Generator().manual_seed(11), torch.device("cpu"))
    vol = render_volume(g, cfg.size, torch.Generator().manual_seed(11), torch.device("cpu"))
    k0 = int(views["slab_positions"][0])
    assert 0 <= k0 <= n_pos - cfg.slab_depth
    torch.testing.assert_close(views["slab"][0, 0], vol[k0 + 1 : k0 + 1 + cfg.slab_depth], rtol=0, atol=1e-5)
    for i, k in enumerate(views["positions"].tolist()):  # 3-slice k: its centre channel is slice k + 1
        torch.testing.assert_close(views["slices"][i, 1], vol[k + 1], rtol=0, atol=1e-5)


def _loud_head(g: torch.nn.Module) -> torch.nn.Module:
    """``g`` with its 3D head's last convolution drawn N(0, 0.3) (it starts at 0: the identity)."""
    assert g.head is not None, "no head: is g_head on?"
    with torch.no_grad():
        g.head.net[-1].weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(3))
    return g


@pytest.mark.parametrize("g_noise", [False, True])
def test_head_training_slab_is_the_generated_volume_at_every_start(g_noise: bool) -> None:
    """With ``g_head`` the training slab (rendered with the head's context either side, the
    volume's end slices where the window leaves it) equals slices k0+1 .. k0+T of the volume the
    same latents make, head included, at both ends and in the middle; the head changes it."""
    cfg = _cfg(g_head=4, g_noise=g_noise)
    torch.manual_seed(0)
    g = _loud_head(build_generator(cfg).eval())
    if g_noise:
        _loud_noise(g)
    dev, n_pos, t = torch.device("cpu"), cfg.size - 2, cfg.slab_depth
    vol = render_volume(g, cfg.size, torch.Generator().manual_seed(11), dev)
    for k0 in (0, 1, (n_pos - t) // 2, n_pos - t):
        views = render_training_views(g, cfg, 1, torch.Generator().manual_seed(11), dev,
                                      slab_positions=torch.tensor([k0]))
        torch.testing.assert_close(views["slab"][0, 0].clamp(-1, 1), vol[k0 + 1 : k0 + 1 + t], rtol=0, atol=1e-5)
        assert float((views["slab"][0, 0] - views["slab_three"][0, :, 1]).abs().mean()) > 1e-3  # the head acts


def test_head_refine_in_chunks_equals_one_pass_and_starts_as_identity() -> None:
    """VolumeHead.refine over z-chunks (each with its context) = the head over the whole volume
    padded by 3 copies of its end slices (torch's replicate pad); an untrained head returns its input."""
    import torch.nn.functional as F

    head = VolumeHead(width=4, layers=3)
    vol = torch.rand(2, 23, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(head.refine(vol, chunk=5), vol)
    with torch.no_grad():
        head.net[-1].weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
        whole = head(F.pad(vol[:, None], (0, 0, 0, 0, 3, 3), mode="replicate"))[:, 0, 3:-3]
        assert float((whole - vol).abs().mean()) > 1e-2
        for chunk in (1, 4, 7, 23, 64):
            torch.testing.assert_close(head.refine(vol, chunk=chunk), whole, rtol=0, atol=1e-6)


def test_head_kept_by_the_inference_generator_and_batched_renders() -> None:
    """The folded inference generator and batched renders carry the head: volumes equal batch-1 ones."""
    cfg = _cfg(g_head=4)
    torch.manual_seed(0)
    g = _loud_head(build_generator(cfg).eval())
    dev, seeds = torch.device("cpu"), [5, 6, 7]
    one = torch.stack([render_volume(g, 20, torch.Generator().manual_seed(s), dev) for s in seeds])
    fast = get_recipe("ctsgan").inference_generator(g)
    folded = render_volumes(fast, 20, [torch.Generator().manual_seed(s) for s in seeds], dev, chunk=7)  # type: ignore[arg-type]
    assert float((one - folded).abs().max()) < 1e-4
    g.head = None
    plain = render_volume(g, 20, torch.Generator().manual_seed(5), dev)
    assert float((one[0] - plain).abs().mean()) > 1e-3


def test_three_slice_noise_by_hand() -> None:
    """3-slice k of volume v gets maps k, k+1, k+2 of volume v's noise volume."""
    field = (100.0 * torch.arange(2)[:, None] + torch.arange(6)[None])[:, :, None, None].expand(2, 6, 2, 2)
    maps = three_slice_noise(field, torch.tensor([0, 1, 1]), torch.tensor([0, 3, 1]))  # (3, 3, 2, 2)
    assert maps[:, :, 0, 0].tolist() == [[0, 1, 2], [103, 104, 105], [101, 102, 103]]


def test_noise_map_moves_only_its_own_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``g_noise``, changing map j of a volume's noise volume changes slices j-1, j, j+1 (the
    3-slices that hold map j write their centres there) and no other: the noise is one field along
    z, fed to every 3-slice at its own place."""
    import ctsgan.training.recipes.ctsgan as rec

    cfg = _cfg(g_noise=True)
    torch.manual_seed(0)
    g = _loud_noise(build_generator(cfg).eval())
    n, j = cfg.size, 7
    vol = render_volume(g, n, torch.Generator().manual_seed(4), torch.device("cpu"))
    real_latents = rec._latents

    def bumped(*args: object, **kwargs: object) -> object:
        patient, eps, h0, field = real_latents(*args, **kwargs)  # type: ignore[arg-type]
        field = field.clone()
        field[:, j] += 3.0
        return patient, eps, h0, field

    monkeypatch.setattr(rec, "_latents", bumped)
    vol2 = render_volume(g, n, torch.Generator().manual_seed(4), torch.device("cpu"))
    change = (vol2 - vol).abs().mean(dim=(1, 2))  # (n,)
    moved = {int(i) for i in torch.nonzero(change > 1e-6)}
    assert moved == {j - 1, j, j + 1}
    assert float(change[j]) > 1e-3


def test_noise_volumes_batched_and_folded_equal_batch_one() -> None:
    """With ``g_noise`` a volume is still fully set by its seed: rendered alone, with others in
    G calls that cross volume boundaries, or by the folded inference generator."""
    cfg = _cfg(g_noise=True)
    torch.manual_seed(0)
    g = _loud_noise(build_generator(cfg).eval())
    dev, seeds = torch.device("cpu"), [5, 6, 7]
    one = torch.stack([render_volume(g, 20, torch.Generator().manual_seed(s), dev) for s in seeds])
    many = render_volumes(g, 20, [torch.Generator().manual_seed(s) for s in seeds], dev, chunk=7)
    fast = get_recipe("ctsgan").inference_generator(g)
    folded = render_volumes(fast, 20, [torch.Generator().manual_seed(s) for s in seeds], dev, chunk=7)  # type: ignore[arg-type]
    assert float((one - many).abs().max()) < 1e-5
    assert float((one - folded).abs().max()) < 1e-4
    assert float((one[0] - one[1]).abs().mean()) > 1e-3  # and the seeds differ


def _renders_agree(g: torch.nn.Module, cfg: CTSGANConfig) -> torch.Tensor:
    """Batch-1 renders of seeds 5 and 6 (returned, (2, S, S, S)) equal the folded inference
    generator's batched renders, and a training slab of seed 5 equals that volume's slices."""
    dev, seeds = torch.device("cpu"), [5, 6]
    one = torch.stack([render_volume(g, cfg.size, torch.Generator().manual_seed(s), dev) for s in seeds])
    fast = get_recipe("ctsgan").inference_generator(g)
    folded = render_volumes(fast, cfg.size, [torch.Generator().manual_seed(s) for s in seeds], dev, chunk=7)  # type: ignore[arg-type]
    assert float((one - folded).abs().max()) < 1e-4
    views = render_training_views(g, cfg, 1, torch.Generator().manual_seed(5), dev)
    k0 = int(views["slab_positions"][0])
    torch.testing.assert_close(views["slab"][0, 0], one[0, k0 + 1 : k0 + 1 + cfg.slab_depth], rtol=0, atol=1e-5)
    return one


@pytest.mark.parametrize(("sigma_z", "sigma_xy"), [(1.5, 0.0), (1.0, 1.0)])
def test_smoothed_noise_volume_has_unit_variance_and_the_gaussian_correlation(sigma_z: float, sigma_xy: float) -> None:
    """smooth_noise_volume: unit variance on every slice (circular padding: the ends too), and the
    neighbour correlation of Gaussian-filtered white noise, exp(-1 / (4 sigma^2)), along each axis."""
    import math

    from ctsgan.networks.ctsgan import smooth_noise_volume

    white = torch.randn(48, 24, 32, 32, generator=torch.Generator().manual_seed(0))
    y = smooth_noise_volume(white, sigma_z, sigma_xy)
    assert y.shape == white.shape
    for k in (0, 12, 23):
        assert float(y[:, k].std()) == pytest.approx(1.0, abs=0.03)

    def lag1(axis: int) -> float:
        return float((y.narrow(axis, 1, y.shape[axis] - 1) * y.narrow(axis, 0, y.shape[axis] - 1)).mean() / y.var())

    assert lag1(1) == pytest.approx(math.exp(-1 / (4 * sigma_z**2)), abs=0.02)
    expected_xy = math.exp(-1 / (4 * sigma_xy**2)) if sigma_xy else 0.0
    assert lag1(3) == pytest.approx(expected_xy, abs=0.02) and lag1(2) == pytest.approx(expected_xy, abs=0.02)


def test_noise_smoothing_needs_the_noise_volume() -> None:
    from ctsgan.config import ConfigError

    with pytest.raises(ConfigError, match="g_noise_smooth"):
        CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "g_noise_smooth": [1.5, 0.0]})
    with pytest.raises(ConfigError, match="g_noise_smooth"):
        CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "g_noise": True, "g_noise_smooth": [-1.0, 0.0]})
    assert CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "g_noise": True, "g_noise_smooth": [1.5, 0.0]}).g_noise_smooth == (1.5, 0.0)


def test_smoothed_noise_reaches_every_render() -> None:
    """``g_noise_smooth``: training views, batched renders and the folded inference generator all
    draw the same smoothed noise volume as a batch-1 render, and it makes the volume change less
    from slice to slice than white noise with the same seed."""
    torch.manual_seed(0)
    white_g = _loud_noise(build_generator(_cfg(g_noise=True)).eval())
    cfg = _cfg(g_noise=True, g_noise_smooth=(2.0, 0.0))
    g = build_generator(cfg).eval()
    g.load_state_dict(white_g.state_dict())
    one = _renders_agree(g, cfg)
    white = torch.stack([render_volume(white_g, cfg.size, torch.Generator().manual_seed(s), torch.device("cpu")) for s in (5, 6)])

    def step(v: torch.Tensor) -> float:
        return float((v[:, 1:] - v[:, :-1]).abs().mean())

    assert step(one) < 0.7 * step(white)


def test_neighbour_codes_by_hand() -> None:
    """``neighbour_codes``: G's input at 3-slice i is [patient, z_{i-1}, z_i, z_{i+1}, position],
    with z_{-1} = z_0 and z_L = z_{L-1} at the ends."""
    cfg = _cfg(neighbour_codes=True)
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    p, e, h0 = _latents(cfg, 3, 9)
    with torch.no_grad():
        z = g.rv(e, h0)[0]  # (L, Z)
        codes = g.codes(p, e, h0)[0]  # (L, P + 3Z + F)
    n_p, n_z = cfg.patient_dim, cfg.slice_dim
    assert codes.shape == (9, n_p + 3 * n_z + cfg.position_dim) and g.g_slice.code_dim == codes.shape[1]
    for i in range(9):
        blocks = codes[i, n_p : n_p + 3 * n_z].reshape(3, n_z)
        for j, k in enumerate((max(i - 1, 0), i, min(i + 1, 8))):
            torch.testing.assert_close(blocks[j], z[k], rtol=0, atol=0)
    torch.testing.assert_close(codes[:, :n_p], p.expand(9, -1), rtol=0, atol=0)


def test_neighbour_codes_reach_every_render() -> None:
    """Training slabs, batched renders and the folded inference generator all build G's input with
    the neighbours' codes: they agree with a batch-1 render."""
    cfg = _cfg(neighbour_codes=True)
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    _renders_agree(g, cfg)


def test_noise_injection_needs_its_noise() -> None:
    """A noise layer called without its maps (or with maps of another size) says what it needs."""
    layer = NoiseInjection(4, 3)
    x = torch.zeros(2, 4, 8, 8)
    with pytest.raises(ValueError, match=r"noise must be \(2, 3, 8, 8\), got None"):
        layer(x, None)
    with pytest.raises(ValueError, match=r"got \(2, 3, 4, 4\)"):
        layer(x, torch.zeros(2, 3, 4, 4))


def test_noise_mix_learns_from_zero() -> None:
    """A fresh noise injection adds nothing (mix 0), yet G's loss gives its mix a gradient."""
    cfg = _cfg(g_noise=True)
    nets = _nets(cfg)
    layer = next(m for m in nets.generator.modules() if isinstance(m, NoiseInjection))
    assert float(layer.weight.detach().abs().sum()) == 0.0
    loss, _ = get_recipe("ctsgan").g_step(nets, 2, cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0


def test_real_slab_is_consecutive_slices_of_one_volume(tmp_path: object) -> None:
    """The sampler's real slab = slices k0+1 .. k0+T of one training volume; 3-slices at their positions."""
    from conftest import write_tiny_dataset
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.data.hu import hu_to_unit

    root = write_tiny_dataset(tmp_path / "data")  # type: ignore[operator]
    ds = PreparedDataset(root, split="train")
    cfg = _cfg()
    sampler = CTSGANSampler(ds, (0, 0), cfg)
    vols = [hu_to_unit(ds.load(i), *cfg.hu_window) for i in range(len(ds))]
    batch = sampler.sample(3)
    for b in range(3):
        k0 = int(batch["slab_positions"][b])
        slab = batch["slab"][b, 0].numpy()
        assert any(np.allclose(slab, v[k0 + 1 : k0 + 1 + cfg.slab_depth]) for v in vols)
    for i, k in enumerate(batch["positions"].tolist()):
        assert any(np.allclose(batch["slices"][i].numpy(), v[k : k + 3]) for v in vols)


@pytest.mark.parametrize("which", ["slice", "slab"])
def test_position_planes_reach_the_discriminators(which: str) -> None:
    """With ``d_position_channels``, each D tells positions apart even without its projection term
    (through its first layer's position bias)."""
    cfg = _cfg(slab_position=True, d_position_channels=8)
    torch.manual_seed(0)
    d = getattr(build_discriminator(cfg), f"d_{which}")
    with torch.no_grad():
        d.embed.weight.zero_()  # no projection: only the input planes carry the position
    s, t = cfg.size, cfg.slab_depth
    if which == "slice":
        out = d(torch.randn(1, 3, s, s).repeat(2, 1, 1, 1), torch.tensor([0, s - 3])).detach()
    else:
        out = d(torch.randn(1, 1, t, s, s).repeat(2, 1, 1, 1, 1), torch.tensor([0, s - 2 - t])).detach()
    assert abs(float(out[0] - out[1])) > 1e-5


@pytest.mark.parametrize("which", ["slice", "slab"])
def test_position_bias_equals_position_planes(which: str) -> None:
    """The first layer's position bias is what F constant position planes as extra input channels
    add to the first convolution (exactly, away from the zero-padded y/x border), and a checkpoint
    of the planes form loads into it."""
    import torch.nn.functional as F

    cfg = _cfg(slab_position=True, d_position_channels=8)
    torch.manual_seed(0)
    d = getattr(build_discriminator(cfg), f"d_{which}")
    s, t, f = cfg.size, cfg.slab_depth, 8
    conv = d.features[0]
    image_ch = 3 if which == "slice" else 1
    planes_w = torch.randn(conv.out_channels, f, *conv.kernel_size) * 0.1  # the old form's extra input channels
    old_state = {k: v for k, v in d.state_dict().items() if not k.startswith("pos_bias")}
    old_state["features.0.weight"] = torch.cat([conv.weight.detach(), planes_w], dim=1)
    d.load_state_dict(old_state)  # converted on load
    pos = torch.tensor([0, 3])
    if which == "slice":
        x = torch.randn(2, 3, s, s)
        planes = d.pos_table[pos][:, :, None, None].expand(-1, -1, s, s)
        old = F.conv2d(torch.cat([x, planes], 1), old_state["features.0.weight"], conv.bias, 2, 1)
        new = conv(x) + d.pos_bias(d.pos_table[pos])[:, :, None, None]
    else:
        x = torch.randn(2, 1, t, s, s)
        idx = pos[:, None] + torch.arange(t)[None]
        planes = d.pos_table[idx].permute(0, 2, 1)[:, :, :, None, None].expand(-1, -1, -1, s, s)
        old = F.conv3d(torch.cat([x, planes], 1), old_state["features.0.weight"], conv.bias, 2, 1)
        new = conv(x) + d.pos_bias(d.pos_table[idx].permute(0, 2, 1))[:, :, :, None, None]
    assert image_ch == d.features[0].in_channels
    torch.testing.assert_close(new[..., 1:-1, 1:-1], old[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-5)
    assert float((new - old).detach().abs().max()) > 1e-3  # the border differs: the test compares the right cut


def test_minibatch_std_sees_the_batch() -> None:
    """With ``mbstd_group``, D's score of a sample depends on how alike its batch is."""
    from ctsgan.networks.ctsgan import minibatch_std

    cfg = _cfg(mbstd_group=2)
    torch.manual_seed(0)
    d = build_discriminator(cfg).d_slice
    with torch.no_grad():
        d.linear.weight[0, -1] = 5.0  # make the std feature count
    x = torch.randn(1, 3, cfg.size, cfg.size)
    pos = torch.tensor([3, 3])
    alike = d(torch.cat([x, x]), pos).detach()  # a collapsed batch: std 0
    mixed = d(torch.cat([x, torch.randn_like(x)]), pos).detach()
    assert abs(float(alike[0] - mixed[0])) > 1e-4
    h = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # by hand: std over the pair (1, 2) per feature, mean 1.5
    torch.testing.assert_close(minibatch_std(h, 2), torch.full((2, 1), 1.5), rtol=1e-4, atol=1e-4)


def test_diversity_ratio_by_hand() -> None:
    """|slab_a - slab_b| / |p_a - p_b| averaged over pairs (0, 1), (2, 3); an odd last volume is left out."""
    from ctsgan.training.recipes.ctsgan import diversity_ratio

    slabs = torch.zeros(5, 1, 2, 2, 2)
    slabs[1] += 0.5  # pair (0, 1): mean |diff| 0.5
    slabs[3] += 0.2  # pair (2, 3): mean |diff| 0.2
    patient = torch.zeros(5, 4)
    patient[1] += 2.0  # |p0 - p1| mean 2 -> 0.25
    patient[3] += 1.0  # |p2 - p3| mean 1 -> 0.2
    assert float(diversity_ratio(slabs, patient)) == pytest.approx((0.25 + 0.2) / 2)


def test_diversity_term_needs_shared_positions() -> None:
    from ctsgan.config import ConfigError

    with pytest.raises(ConfigError, match="shared_positions"):
        CTSGANConfig.from_dict({"size": 16, "slab_depth": 4, "diversity_weight": 1.0})
    cfg = _cfg(shared_positions=True, diversity_weight=1.0)
    nets = _nets(cfg)
    _, scalars = get_recipe("ctsgan").g_step(nets, 2, cfg, torch.Generator().manual_seed(0))
    assert float(scalars["g/diversity"]) > 0


def test_overlap_disagreement_by_hand() -> None:
    """Windows of one volume agree (0); raising one channel of one 3-slice by c is seen by the pairs
    that channel is in: channel 2 of 3-slice 1 is in two pairs of T - 1 = 3 and T - 2 = 2 windows."""
    from ctsgan.training.recipes.ctsgan import overlap_disagreement

    vol = torch.randn(2, 7, 4, 4)  # (B, slices, S, S)
    three = torch.stack([vol[:, k : k + 3] for k in range(5)], dim=1)  # (B, T=5, 3, S, S)
    assert float(overlap_disagreement(three)) == 0.0
    c = 0.6
    three[:, 1, 2] += c  # slice 3 as 3-slice 1 draws it
    # pair (k ch2, k+1 ch1): 1 of 4 windows off by c; pair (k+1 ch0, k ch1): untouched;
    # pair (k ch2, k+2 ch0): 1 of 3 windows off by c
    assert float(overlap_disagreement(three)) == pytest.approx((c / 4 + 0 + c / 3) / 3)
    assert float(overlap_disagreement(three[:, 1:3])) == pytest.approx((c + 0) / 2)  # T = 2: two pairs


def test_overlap_term_enters_g_loss_with_its_weight() -> None:
    """``overlap_weight``: G's loss is the adversarial loss plus w x the slab's overlap disagreement
    (same noise, same views), and the term's gradient reaches G_slice."""
    from ctsgan.training.recipes.ctsgan import overlap_disagreement

    recipe = get_recipe("ctsgan")
    base = _cfg()
    nets = _nets(base)
    nets.discriminator.requires_grad_(False)
    loss0, _ = recipe.g_step(nets, 2, base, torch.Generator().manual_seed(4))
    w = 7.0
    loss_w, scalars = recipe.g_step(nets, 2, _cfg(overlap_weight=w), torch.Generator().manual_seed(4))
    with torch.no_grad():
        views = render_training_views(nets.generator, base, 2, torch.Generator().manual_seed(4), torch.device("cpu"))
    expected = float(overlap_disagreement(views["slab_three"]))
    assert expected > 0.01  # an untrained G's 3-slices do not agree
    assert float(scalars["g/overlap"]) == pytest.approx(expected, rel=1e-5)
    assert float((loss_w - loss0).detach()) == pytest.approx(w * expected, rel=1e-4)
    nets.generator.zero_grad(set_to_none=True)
    recipe.g_step(nets, 2, _cfg(overlap_weight=w, slice_weight=0.0, slab_weight=0.0), torch.Generator().manual_seed(4))[0].backward()
    grads = [q.grad for q in nets.generator.g_slice.parameters()]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize("reuse", [False, True])
def test_reused_fakes_are_the_d_phase_fakes_with_their_graph(reuse: bool) -> None:
    """With ``reuse_fakes`` one training step renders once: G's loss scores the very views the D
    phase rendered (same pixels, same positions), and G still gets its gradient through them.
    Without it, the G phase renders new views."""
    cfg = _cfg(reuse_fakes=reuse)
    nets = _nets(cfg)
    recipe = get_recipe("ctsgan")
    calls: list[torch.Tensor] = []
    hook = nets.generator.g_slice.register_forward_hook(lambda m, i, o: calls.append(o.detach().clone()))
    real = _real_batch(cfg, 2)
    noise = torch.Generator().manual_seed(0)
    recipe.d_step(nets, real, cfg, noise, penalty_weight=0.0)
    nets.discriminator.requires_grad_(False)
    loss, _ = recipe.g_step(nets, 2, cfg, noise, real=real)
    hook.remove()
    assert len(calls) == (1 if reuse else 2)
    assert not any(k.startswith("reused_fake/") for k in real)  # consumed, not left for a later step
    nets.generator.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in nets.generator.g_slice.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads if g is not None) > 0
