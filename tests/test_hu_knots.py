"""A piecewise-linear HU <-> network-unit map (``hu_knots``): exact by hand, inverse, and used on
both sides of training (the real batches) and on the way out (generated volumes in HU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ctsgan.data.hu import check_knots, hu_to_unit, unit_to_hu
from training_helpers import one_thread, tiny_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = (-1024.0, 600.0)
KNOTS = ((-200.0, -0.5), (200.0, 0.5))


def test_knots_map_by_hand() -> None:
    # segments: [-1024, -200] -> [-1, -0.5], [-200, 200] -> [-0.5, 0.5], [200, 600] -> [0.5, 1]
    hu = np.array([-3000, -1024, -612, -200, -100, 0, 200, 400, 600, 3000], dtype=np.int16)
    want = [-1.0, -1.0, -0.75, -0.5, -0.25, 0.0, 0.5, 0.75, 1.0, 1.0]
    np.testing.assert_allclose(hu_to_unit(hu, *WINDOW, KNOTS), want, atol=1e-6)
    t = hu_to_unit(torch.tensor(hu), *WINDOW, KNOTS)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), want, atol=1e-6)
    # fat (-100) and soft tissue (40) lie twice as far apart as on the linear map
    lin = np.diff(np.asarray(hu_to_unit(np.array([-100, 40]), *WINDOW)))
    curved = np.diff(np.asarray(hu_to_unit(np.array([-100, 40]), *WINDOW, KNOTS)))
    np.testing.assert_allclose(curved / lin, 1624 / 800, rtol=1e-5)


def test_knots_round_trip_every_hu_of_the_window_exactly() -> None:
    hu = np.arange(-1024, 601, dtype=np.int16)
    back = unit_to_hu(hu_to_unit(hu, *WINDOW, KNOTS), *WINDOW, KNOTS)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, hu)
    np.testing.assert_array_equal(unit_to_hu(np.array([-5.0, 5.0]), *WINDOW, KNOTS), [-1024, 600])


def test_device_side_conversion_matches_the_shared_map() -> None:
    from ctsgan.generation.generate import unit_to_hu_array

    x = torch.cat([torch.linspace(-1.2, 1.2, 20001), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])])
    np.testing.assert_array_equal(unit_to_hu_array(x, *WINDOW, KNOTS), unit_to_hu(x, *WINDOW, KNOTS))


@pytest.mark.parametrize("knots", [
    ((200.0, -0.5), (-200.0, 0.5)),   # HU decreasing
    ((-200.0, 0.5), (200.0, -0.5)),   # unit decreasing
    ((-2000.0, -0.5),),               # outside the window
    ((0.0, 1.0),),                    # on the unit range's end
])
def test_bad_knots_are_rejected_by_name(knots: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError, match="knots"):
        check_knots(*WINDOW, knots)
    with pytest.raises(ValidationError, match="knots"):
        tiny_config("ctsgan", hu_knots=[list(k) for k in knots])


def test_inpainters_refuse_knots() -> None:
    from ctsgan.nodules.inpainter import InpaintConfig

    with pytest.raises(ValidationError, match="hu_knots must be empty"):
        InpaintConfig(hu_knots=[[-200.0, -0.5]])


def test_real_batches_use_the_knots(tmp_path: Path) -> None:
    from conftest import write_tiny_dataset
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.training.recipes.ctsgan import CTSGANSampler

    ds = PreparedDataset(write_tiny_dataset(tmp_path / "data"), split="train")
    cfg = tiny_config("ctsgan", hu_knots=[list(k) for k in KNOTS])
    slab = CTSGANSampler(ds, (0, 0), cfg).sample(2)["slab"].numpy()  # type: ignore[arg-type]
    curved = np.concatenate([np.asarray(hu_to_unit(ds.load(i), *WINDOW, KNOTS)).ravel() for i in range(len(ds))])
    linear = np.concatenate([np.asarray(hu_to_unit(ds.load(i), *WINDOW)).ravel() for i in range(len(ds))])
    values = np.unique(np.round(slab, 5))
    assert np.isin(values, np.round(curved, 5)).all()
    assert not np.isin(values, np.round(linear, 5)).all()


def test_d_windows_follow_the_knots() -> None:
    from ctsgan.training.recipes.ctsgan import d_windows_unit

    cfg = tiny_config("ctsgan", hu_knots=[list(k) for k in KNOTS], d_windows=[[-200.0, 200.0]])
    np.testing.assert_allclose(d_windows_unit(cfg), [(-0.5, 0.5)], atol=1e-6)  # type: ignore[arg-type]


def test_generated_volumes_are_written_through_the_knots(tmp_path: Path) -> None:
    """A run trained with knots keeps them in its checkpoint, and generation maps G's output back
    to HU through them (not through the linear window)."""
    from conftest import write_tiny_dataset
    from ctsgan.generation import generate_volumes, load_generator, volume_seed
    from ctsgan.training import train

    cfg = tiny_config("ctsgan", hu_knots=[list(k) for k in KNOTS])
    train("ctsgan", cfg, write_tiny_dataset(tmp_path / "data"), tmp_path / "run", steps=2, progress=False)
    g = load_generator(tmp_path / "run")
    assert [tuple(k) for k in g.config.hu_knots] == list(KNOTS)
    unit = g.recipe.sample_volume(g.generator, g.config, volume_seed(0, 0), g.device)
    (path,) = generate_volumes(tmp_path / "run", 1, tmp_path / "gen", seed=0, fmt="npy")
    written = np.load(path)
    np.testing.assert_array_equal(written, unit_to_hu(unit, *WINDOW, KNOTS))
    assert not np.array_equal(written, unit_to_hu(unit, *WINDOW))
