"""HU calibration of a trained generator (ctsgan.data.hu_calibration): the fitted map by hand
on known distributions, its file beside the checkpoint, and generation applying it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.hu_calibration import (
    HuCalibration,
    body_values,
    calibration_path,
    fit_hu_calibration,
    load_calibration,
    save_calibration,
)
from training_helpers import one_thread, tiny_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = (-1024.0, 600.0)


def _chest(rng: np.random.Generator, radius: float, body_hu: float, spread: float, size: int = 24) -> np.ndarray:
    """Air (-1024) outside a cylinder of ``radius`` (fraction of the half edge) holding
    N(body_hu, spread) HU, with a lung-like block of -850 HU inside (its area in proportion)."""
    yy, xx = np.meshgrid(*(np.linspace(-1, 1, size),) * 2, indexing="ij")
    inside = yy**2 + xx**2 < radius**2
    vol = np.full((size, size, size), -1024.0)
    vol[:, inside] = rng.normal(body_hu, spread, (size, int(inside.sum())))
    c, half = size // 2, max(1, round(radius * 2.5))
    vol[:, c - half : c + half, c - half : c + half] = -850.0
    return np.rint(vol).astype(np.int16)


def test_a_shifted_generator_is_shifted_back() -> None:
    rng = np.random.default_rng(0)
    real = [_chest(rng, 0.8, 40.0, 30.0) for _ in range(3)]
    gen = [_chest(rng, 0.8, -10.0, 30.0) for _ in range(3)]  # 50 HU too dark
    cal = fit_hu_calibration(real, gen, WINDOW, step=7)
    lut = cal.lut()
    assert lut.dtype == np.int16 and lut.shape == (1625,)
    h = np.arange(-60, 41)  # the generated body's central range -> +50 HU
    assert np.abs(lut[h + 1024] - (h + 50)).max() <= 3
    assert lut[0] == -1024 and lut[-1] == 600  # the window's ends stay
    assert (np.diff(lut.astype(int)) >= 0).all()  # monotone: voxel order kept
    assert cal.step == 7 and cal.volumes == 3 and cal.real_volumes == 3


def test_same_distribution_is_the_identity() -> None:
    rng = np.random.default_rng(1)
    real = [_chest(rng, 0.8, 40.0, 60.0) for _ in range(3)]
    gen = [_chest(rng, 0.8, 40.0, 60.0) for _ in range(3)]
    h = np.arange(-50, 131)
    assert np.abs(fit_hu_calibration(real, gen, WINDOW, 0).lut()[h + 1024] - h).max() <= 4


def test_fit_sees_body_voxels_only() -> None:
    """Bodies of different size, same tissue: the map stays the identity on body HU. Fitted on all
    voxels, the generated set's extra air would pull its quantiles down (the map goes wrong)."""
    rng = np.random.default_rng(2)
    real = [_chest(rng, 0.9, 40.0, 60.0) for _ in range(3)]
    gen = [_chest(rng, 0.45, 40.0, 60.0) for _ in range(3)]
    assert body_values(gen, WINDOW).size < 0.4 * body_values(real, WINDOW).size
    h = np.arange(-50, 131)
    assert np.abs(fit_hu_calibration(real, gen, WINDOW, 0).lut()[h + 1024] - h).max() <= 6


def test_apply_clips_to_the_window_and_keeps_shape() -> None:
    cal = HuCalibration((-1024.0, 0.0, 600.0), (-1024.0, 100.0, 600.0), 1, 1, 1)
    out = cal.apply(np.array([[-3000, -1024, -512], [0, 300, 3000]], dtype=np.int16))
    np.testing.assert_array_equal(out, [[-1024, -1024, -462], [100, 350, 600]])  # (-512: halfway to 0 -> -462)


def test_file_beside_the_checkpoint_round_trips_and_is_checked(tmp_path: Path) -> None:
    ckpt = tmp_path / "step-00000010.pt"
    cal = HuCalibration((-1024.0, -100.5, 600.0), (-1024.0, -80.25, 600.0), 10, 4, 2)
    path = save_calibration(cal, ckpt)
    assert path == calibration_path(ckpt) == tmp_path / "step-00000010.calibration.json"
    assert load_calibration(ckpt, 10) == cal
    assert load_calibration(tmp_path / "step-00000020.pt", 20) is None
    with pytest.raises(ValueError, match=r"step-00000010.calibration.json: fitted for step 10"):
        load_calibration(ckpt, 11)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"step-00000010.calibration.json: not a ctsgan HU calibration"):
        load_calibration(ckpt, 10)


def test_training_fits_it_and_generation_applies_it(tmp_path: Path) -> None:
    """``hu_calibration: true``: the last checkpoint gets the calibration of its own raw output
    (the calibration seeds) against the training volumes, the one ``ctsgan calibrate`` would fit;
    generated volumes are the calibrated raw ones."""
    from conftest import write_tiny_dataset
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.data.hu_calibration import calibration_seeds
    from ctsgan.generation import generate_volumes, load_generator, volume_seed
    from ctsgan.training import train

    data = write_tiny_dataset(tmp_path / "data")
    cfg = tiny_config("ctsgan", hu_calibration=True, hu_calibration_volumes=4)
    ckpt = train("ctsgan", cfg, data, tmp_path / "run", steps=2, progress=False)
    cal = load_calibration(ckpt, 2)
    assert cal is not None and cal.volumes == 4 and cal.real_volumes == 4
    g = load_generator(ckpt, calibrated=False)
    ds = PreparedDataset(data, split="train")
    again = fit_hu_calibration([ds.load(i) for i in range(len(ds))],
                               [g.sample(s) for s in calibration_seeds(4)], WINDOW, 2)
    # training fits on its EMA module, generation samples the inference form (BatchNorm folded):
    # equal up to float rounding, so landmarks within a HU
    assert len(cal.source) == len(again.source)
    np.testing.assert_allclose(cal.source, again.source, atol=1.0)
    np.testing.assert_allclose(cal.target, again.target, atol=1.0)
    (cooked,) = generate_volumes(tmp_path / "run", 1, tmp_path / "cal", seed=3, fmt="npy")
    (raw,) = generate_volumes(tmp_path / "run", 1, tmp_path / "raw", seed=3, fmt="npy", calibrated=False)
    v_cal, v_raw = np.load(cooked), np.load(raw)
    np.testing.assert_array_equal(v_raw, g.sample(volume_seed(3, 0)))
    np.testing.assert_array_equal(v_cal, cal.apply(v_raw))
    assert np.abs(v_cal.astype(int) - v_raw).mean() > 50  # an untrained G's HU are far from the data's
    calibration_path(ckpt).unlink()  # e.g. a run killed before its calibration: raw HU, said aloud
    with pytest.warns(UserWarning, match="asks for an HU calibration but this checkpoint has none"):
        bare = load_generator(ckpt)
    np.testing.assert_array_equal(bare.sample(volume_seed(3, 0)), v_raw)


def test_calibrate_command_and_its_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conftest import write_tiny_dataset
    from ctsgan.cli import app
    from ctsgan.training import train

    data = write_tiny_dataset(tmp_path / "data")
    ckpt = train("ctsgan", tiny_config("ctsgan"), data, tmp_path / "run", steps=2, progress=False)
    assert not calibration_path(ckpt).exists()  # off unless asked
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", "--checkpoint", str(tmp_path / "run"), "--volumes", "2"])
    assert res.exit_code == 0, res.output
    assert calibration_path(ckpt).is_file() and "step 2" in res.output
    res = runner.invoke(app, ["calibrate", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "nope" in res.output


def test_pruned_checkpoints_take_their_calibration_with_them(tmp_path: Path) -> None:
    from ctsgan.training.checkpoint import checkpoint_path, save_checkpoint

    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
        save_calibration(HuCalibration((-1024.0, 600.0), (-1024.0, 600.0), step, 1, 1), checkpoint_path(tmp_path, step))
    save_checkpoint(tmp_path, 3, {"step": 3}, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000002.calibration.json", "step-00000002.pt", "step-00000003.pt"]
