"""The gan3d recipe on the shared trainer: presets, sampler, resume, DDP, generation with --size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctsgan.config import ConfigError
from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import hu_to_unit
from ctsgan.generation import generate_volumes, load_generator
from ctsgan.io.volumes import read_nifti
from ctsgan.training import train
from ctsgan.training.recipes import get_recipe, recipe_names
from ctsgan.training.recipes.gan3d import Gan3dConfig, Gan3dSampler
from training_helpers import (  # noqa: F401
    assert_ddp_consistent,
    assert_resume_bit_exact,
    one_thread,
    tiny_config,
    train_tiny_run,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run("gan3d", tmp_path_factory.mktemp("gan3d"), steps=2, size=16)


def test_registered() -> None:
    assert "gan3d" in recipe_names()
    assert get_recipe("gan3d").config_cls is Gan3dConfig


@pytest.mark.parametrize(("preset", "size"), [("tiny", 16), ("cpu32", 32), ("paper128", 128)])
def test_preset_networks_shapes(preset: str, size: int) -> None:
    """Every preset's G makes (1, 1, S, S, S) cubes in [-1, 1] and its D one logit each (batch 1, no training)."""
    recipe = get_recipe("gan3d")
    cfg = recipe.load_config(preset)
    assert cfg.size == size
    nets = recipe.build_networks(cfg)
    nets.generator.eval()
    with torch.no_grad():
        x = nets.generator(torch.randn(1, cfg.latent_dim))
        assert x.shape == (1, 1, size, size, size)
        assert float(x.abs().max()) <= 1.0
        assert nets.discriminator(x).shape == (1,)


def test_paper128_widths_equal_ctsgan_paper224() -> None:
    """The baseline preset is compared with CT-SGAN at equal widths."""
    g3, cs = get_recipe("gan3d").load_config("paper128"), get_recipe("ctsgan").load_config("paper224")
    assert (g3.g_width, g3.g_max_width) == (cs.g_width, cs.g_max_width)
    assert (g3.d_width, g3.d_max_width) == (cs.d_slice_width, cs.d_slice_max_width)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="size"):
        Gan3dConfig.from_dict({"model": "gan3d", "size": 50})
    with pytest.raises(ConfigError, match="g_max_width"):
        Gan3dConfig.from_dict({"model": "gan3d", "size": 16, "g_width": 32, "g_max_width": 16})


def test_sampler_gives_whole_cubes_of_the_train_split(make_tiny_dataset: Callable[..., Path]) -> None:
    data = PreparedDataset(make_tiny_dataset(size=16), split="train")
    cfg = tiny_config("gan3d")
    sampler = Gan3dSampler(data, (0, 0), cfg.hu_window)
    state = sampler.state_dict()
    batch = sampler.sample(3)["volume"]
    assert batch.shape == (3, 1, 16, 16, 16) and batch.dtype == torch.float32
    # The same draws, worked out from the sampler's RNG and the dataset directly.
    rng = np.random.default_rng()
    rng.bit_generator.state = state["bit_generator"]
    picks = rng.integers(len(data), size=3)
    expected = np.stack([hu_to_unit(np.asarray(data.load(int(i)))) for i in picks])[:, None]
    np.testing.assert_array_equal(batch.numpy(), expected)


def test_check_dataset_names_the_size_mismatch(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_tiny_dataset(size=16)
    with pytest.raises(ValueError, match="16\\^3 but the gan3d config size is 32"):
        train("gan3d", "cpu32", data, tmp_path / "run", steps=1, progress=False)


def test_resume_is_bit_exact(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    assert_resume_bit_exact("gan3d", tiny_config("gan3d"), make_tiny_dataset(size=16), tmp_path, n=2)


def test_resume_is_bit_exact_wgan_gp(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    cfg = tiny_config("gan3d", loss="wgan", penalty="wgan-gp", penalty_weight=10.0)
    assert_resume_bit_exact("gan3d", cfg, make_tiny_dataset(size=16), tmp_path, n=1)


@pytest.mark.slow
def test_two_cpu_processes_keep_equal_weights_and_shard_generation(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    assert_ddp_consistent("gan3d", tiny_config("gan3d"), make_tiny_dataset(size=16), tmp_path, steps=2, n_volumes=3)


def test_sample_volume_resamples_trilinearly(run_dir: Path) -> None:
    """``size`` = the trained cube upsampled with trilinear interpolation (worked out here with F.interpolate)."""
    loaded = load_generator(run_dir, device="cpu")
    recipe, cfg, g = loaded.recipe, loaded.config, loaded.generator
    native = recipe.sample_volume(g, cfg, 5, torch.device("cpu"))
    assert native.shape == (16, 16, 16) and native.dtype == torch.float32
    up = recipe.sample_volume(g, cfg, 5, torch.device("cpu"), size=28)
    expected = F.interpolate(native[None, None], size=(28, 28, 28), mode="trilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(up, expected, rtol=0, atol=1e-5)
    assert torch.equal(native, recipe.sample_volume(g, cfg, 5, torch.device("cpu")))  # deterministic per seed
    assert not torch.equal(native, recipe.sample_volume(g, cfg, 6, torch.device("cpu")))
    with pytest.raises(ValueError, match="cubes"):
        recipe.sample_volume(g, cfg, 5, torch.device("cpu"), slices=20)


def test_generate_with_size_writes_upsampled_cubes_with_scaled_spacing(run_dir: Path, tmp_path: Path) -> None:
    """As the paper's baseline: cubes made at S, written at --size with the spacing scaled by S / size."""
    paths = generate_volumes(run_dir, 2, tmp_path / "out", seed=3, size=24)
    vol, spacing = read_nifti(paths[0])
    assert vol.shape == (24, 24, 24) and vol.dtype == np.int16
    np.testing.assert_allclose(spacing, (16 / 24,) * 3, rtol=1e-6)  # tiny dataset spacing is 1 mm
    assert (tmp_path / "out" / "previews" / f"{paths[0].name.split('.')[0]}.png").is_file()
    again = generate_volumes(run_dir, 1, tmp_path / "again", seed=3, size=24)
    np.testing.assert_array_equal(read_nifti(again[0])[0], vol)


def test_inference_generator_folds_batchnorm_same_outputs() -> None:
    recipe = get_recipe("gan3d")
    cfg = tiny_config("gan3d")
    g = recipe.build_networks(cfg).generator
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            g(torch.randn(4, cfg.latent_dim))
    g.eval()
    fast = recipe.inference_generator(g)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in g.modules())  # the trained module is untouched
    z = torch.randn(2, cfg.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(fast(z), g(z), rtol=0, atol=1e-5)


def test_bench_generate_times_the_paper_baseline_upsampled() -> None:
    """``ctsgan bench generate --model gan3d``: paper128 cubes resampled to --size; FLOPs counted
    match 2 * in_voxels * C_in * C_out * k^3 summed over the transposed convolutions (by hand)."""
    from ctsgan.bench.generate import bench_generate

    result = bench_generate(size=24, model="gan3d", repeats=1, matmul_size=256)
    assert result["volume_shape"] == [24, 24, 24]
    cfg = get_recipe("gan3d").load_config("paper128")
    g = get_recipe("gan3d").build_networks(cfg).generator
    edge, flops = 1, 0
    for m in g.modules():
        if isinstance(m, torch.nn.ConvTranspose3d):
            k = m.kernel_size[0]
            flops += 2 * edge**3 * m.in_channels * m.out_channels * k**3
            edge = (edge - 1) * m.stride[0] - 2 * m.padding[0] + k
    assert edge == 128
    assert result["gflop_per_volume"] == pytest.approx(flops / 1e9, rel=1e-6)
    assert result["seconds_per_volume"] > 0 and result["efficiency"] > 0
