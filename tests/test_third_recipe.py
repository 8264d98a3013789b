"""A third model works end to end through the recipe contract alone: train, generate and
``bench memory`` (issue "One training loop for every model"). The model, ``tests/plugins/toy_recipe.py``,
lives outside the package and is registered through ``CTSGAN_RECIPE_MODULES``, as a user's would be."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.training import recipes

PLUGINS = Path(__file__).with_name("plugins")


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``toy`` registered as a user's recipe module would be (env var + import path), then removed."""
    recipes.recipe_names()  # the built-in recipes registered first, so the registry restored below holds them
    monkeypatch.setenv(recipes.EXTRA_MODULES_ENV, "toy_recipe")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setattr(recipes, "_REGISTRY", dict(recipes._REGISTRY))
    monkeypatch.setattr(recipes, "_loaded", False)
    yield
    sys.modules.pop("toy_recipe", None)


def test_a_third_model_trains_generates_and_benchmarks(
    toy_registered: None, make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    from ctsgan.bench.memory import MemoryCase, Widths, bench_config, measure_in_subprocess
    from ctsgan.generation import generate_volumes
    from ctsgan.training import train
    from ctsgan.training.checkpoint import load_checkpoint

    assert "toy" in recipes.recipe_names()
    recipe = recipes.get_recipe("toy")
    cfg = recipe.load_config(str(PLUGINS / "toy_bench.yaml"))
    torch.set_num_threads(1)
    last = train("toy", cfg, make_tiny_dataset(n=4, size=8), tmp_path / "run", steps=3, progress=False)
    assert load_checkpoint(last)["step"] == 3 and (tmp_path / "run" / "previews" / "step-00000003.png").exists()

    paths = generate_volumes(tmp_path / "run", 2, tmp_path / "gen", fmt="npy", previews=False, device="cpu")
    vols = [np.load(p) for p in paths]
    assert [v.shape for v in vols] == [(8, 8, 8)] * 2 and vols[0].dtype == np.int16
    assert not np.array_equal(vols[0], vols[1])  # one volume per seed

    # bench memory takes the toy's preset and width fields from its recipe (no per-model code)
    case = MemoryCase("toy", "toy", 8, None, "cpu", Widths(6, 5, 64), repeats=1, threads=1)
    bc = bench_config(case)
    assert (bc.g_width, bc.d_width, bc.max_width, bc.batch_size) == (6, 5, 64, 1)
    result = measure_in_subprocess(case, timeout_s=300)  # a fresh process: it finds toy through the env var
    assert result.fits, result.reason
    nets = recipe.build_networks(bc)
    assert result.params == {"G": sum(p.numel() for p in nets.generator.parameters()),
                             "D": sum(p.numel() for p in nets.discriminator.parameters())}
    assert result.peak_bytes is not None and result.peak_bytes > 0 and result.step_seconds is not None


def test_an_unimportable_recipe_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    recipes.recipe_names()
    monkeypatch.setenv(recipes.EXTRA_MODULES_ENV, "no_such_recipe_module")
    monkeypatch.setattr(recipes, "_REGISTRY", dict(recipes._REGISTRY))
    monkeypatch.setattr(recipes, "_loaded", False)
    with pytest.raises(ImportError, match="CTSGAN_RECIPE_MODULES: cannot import recipe module 'no_such_recipe_module'"):
        recipes.recipe_names()
