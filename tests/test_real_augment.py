"""In-plane augmentation of the real training samples (training/real_augment.py): the transform
itself against hand-built cases, and the CT-SGAN sampler applying exactly the drawn transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.data.inplane_affine import affine_inplane, draw_affine, draw_elastic, elastic_displacement
from ctsgan.training.recipes.ctsgan import CTSGANConfig, CTSGANSampler


def test_identity_parameters_leave_samples_unchanged() -> None:
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    out = affine_inplane(x, np.array([[1.0, 1.0, 0.0]] * 2))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)  # float rounding of the air offset


def test_ninety_degrees_is_rot90_counter_clockwise() -> None:
    x = torch.rand(1, 3, 10, 10)
    torch.testing.assert_close(affine_inplane(x, np.array([[1.0, 1.0, 90.0]])), torch.rot90(x, 1, (-2, -1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(affine_inplane(x, np.array([[1.0, 1.0, -90.0]])), torch.rot90(x, -1, (-2, -1)), rtol=0, atol=1e-5)


def test_scale_enlarges_each_axis_by_its_own_factor_and_fills_with_air() -> None:
    """A centred 4 x 4 square in 16 x 16: scale_y 1.5 -> 6 rows, scale_x 1 -> still 4 columns;
    scale 0.5 shrinks it to 2 x 2; everything outside stays -1 (air)."""
    x = -torch.ones(1, 2, 16, 16)
    x[..., 6:10, 6:10] = 1.0
    tall = affine_inplane(x, np.array([[1.5, 1.0, 0.0]]))[0, 0] > 0
    assert int(tall.any(1).sum()) == 6 and int(tall.any(0).sum()) == 4
    small = affine_inplane(x, np.array([[0.5, 0.5, 0.0]]))[0, 0] > 0
    assert int(small.any(1).sum()) == 2 and int(small.any(0).sum()) == 2
    shrunk = affine_inplane(-torch.ones(1, 1, 16, 16), np.array([[0.5, 0.5, 30.0]]))
    torch.testing.assert_close(shrunk, -torch.ones(1, 1, 16, 16))  # the outside is filled with air, not 0


def test_one_transform_per_sample_for_all_its_slices() -> None:
    """Every slice (channel) of a sample moves together (slabs stay 3D-consistent); samples differ."""
    img = torch.rand(1, 1, 16, 16) * 2 - 1
    x = img.repeat(2, 5, 1, 1)
    out = affine_inplane(x, np.array([[1.2, 0.9, 7.0], [0.8, 1.1, -4.0]]))
    for c in range(1, 5):
        torch.testing.assert_close(out[:, c], out[:, 0], rtol=0, atol=0)
    assert float((out[0] - out[1]).abs().max()) > 0.1


def test_draws_cover_their_ranges() -> None:
    p = draw_affine(np.random.default_rng(0), 2000, 0.2, 10.0)
    assert p.shape == (2000, 3)
    for col, lo, hi in ((0, 0.8, 1.2), (1, 0.8, 1.2), (2, -10.0, 10.0)):
        assert lo <= p[:, col].min() < lo + 0.05 * (hi - lo) and hi - 0.05 * (hi - lo) < p[:, col].max() <= hi
    assert abs(np.corrcoef(p[:, 0], p[:, 1])[0, 1]) < 0.1  # the two axes are scaled independently


def _cfg(**kw: object) -> CTSGANConfig:
    return CTSGANConfig(size=16, slab_depth=4, n_slices=2, **kw)  # type: ignore[arg-type]


def test_sampler_applies_exactly_the_drawn_transform(make_tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    """With real_scale / real_rotate_deg the sampler draws the same volumes and positions as
    without, then transforms each real slab and 3-slice by parameters drawn next from its own
    generator (so checkpointed sampler state replays them); without them it draws nothing more."""
    from ctsgan.data.dataset import PreparedDataset

    ds = PreparedDataset(Path(make_tiny_dataset()), split="train")
    plain = CTSGANSampler(ds, (0, 0), _cfg())
    aug = CTSGANSampler(ds, (0, 0), _cfg(real_scale=0.2, real_rotate_deg=10.0))
    b0, b1 = plain.sample(3), aug.sample(3)
    assert torch.equal(b0["positions"], b1["positions"]) and torch.equal(b0["slab_positions"], b1["slab_positions"])
    p_slab = draw_affine(plain.rng, 3, 0.2, 10.0)  # plain's generator is where aug's was before augmenting
    p_slices = draw_affine(plain.rng, 3 * 2, 0.2, 10.0)
    assert not torch.allclose(b1["slab"], b0["slab"], atol=1e-3)
    torch.testing.assert_close(b1["slab"][:, 0], affine_inplane(b0["slab"][:, 0], p_slab), rtol=0, atol=1e-6)
    torch.testing.assert_close(b1["slices"], affine_inplane(b0["slices"], p_slices), rtol=0, atol=1e-6)
    assert plain.rng.bit_generator.state == aug.rng.bit_generator.state

    state = aug.state_dict()
    again = aug.sample(2)
    aug.load_state_dict(state)
    replay = aug.sample(2)
    for k in again:
        assert torch.equal(again[k], replay[k]), k


@pytest.mark.parametrize("kw", [{"real_scale": 0.5}, {"real_scale": -0.1}, {"real_rotate_deg": 60.0}, {"real_elastic": 0.2}])
def test_out_of_range_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="real_"):
        _cfg(**kw)


def test_uniform_elastic_offset_is_a_shift_by_that_fraction_of_the_edge() -> None:
    """Every control point moved by +0.25 edge along x: output column c reads input column c + 4
    of 16 (a bar at column 10 appears at column 6); along y likewise for rows; zero offsets warp nothing."""
    x = -torch.ones(1, 2, 16, 16)
    x[..., :, 10] = 1.0
    x[..., 12, :] = 0.5
    off = np.zeros((1, 2, 4, 4))
    off[0, 0] = 0.25  # x
    off[0, 1] = -0.125  # y: rows move down by 2
    out = affine_inplane(x, np.array([[1.0, 1.0, 0.0]]), displacement=elastic_displacement(off, 16, 16))
    assert torch.isclose(out[0, 0, 4, 6], torch.tensor(1.0), atol=1e-4) and float(out[0, 0, 4, 10]) < 0
    torch.testing.assert_close(out[0, :, 14, :6], torch.full((2, 6), 0.5), rtol=0, atol=1e-4)
    same = affine_inplane(x, np.array([[1.0, 1.0, 0.0]]), displacement=elastic_displacement(np.zeros((1, 2, 4, 4)), 16, 16))
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)


def test_elastic_warp_is_smooth_per_sample_and_moves_all_slices_together() -> None:
    """Drawn warps: the field varies (not a shift), changes little between neighbouring pixels
    (bicubic between 4 x 4 control points), and every slice of a sample is warped alike."""
    off = draw_elastic(np.random.default_rng(0), 2, 0.05)
    assert off.shape == (2, 2, 4, 4) and 0.03 < off.std() < 0.07
    d = elastic_displacement(off, 32, 32)
    assert d.shape == (2, 32, 32, 2)
    assert float(d.std(dim=(1, 2)).min()) > 0.02  # not a uniform shift
    assert float((d[:, 1:] - d[:, :-1]).abs().max()) < 0.25 * float(d.abs().max())  # smooth
    img = torch.rand(1, 1, 32, 32) * 2 - 1
    out = affine_inplane(img.repeat(2, 4, 1, 1), np.array([[1.0, 1.0, 0.0]] * 2), displacement=d)
    for c in range(1, 4):
        torch.testing.assert_close(out[:, c], out[:, 0], rtol=0, atol=0)
    assert float((out[0] - out[1]).abs().max()) > 0.1
    with pytest.raises(ValueError, match="displacement"):
        affine_inplane(img, np.array([[1.0, 1.0, 0.0]]), displacement=d)


def test_sampler_warps_with_the_elastic_draw_after_the_affine_one(make_tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    from ctsgan.data.dataset import PreparedDataset

    ds = PreparedDataset(Path(make_tiny_dataset()), split="train")
    plain = CTSGANSampler(ds, (0, 0), _cfg())
    aug = CTSGANSampler(ds, (0, 0), _cfg(real_scale=0.1, real_elastic=0.05))
    b0, b1 = plain.sample(2), aug.sample(2)
    p = draw_affine(plain.rng, 2, 0.1, 0.0)
    warp = elastic_displacement(draw_elastic(plain.rng, 2, 0.05), 16, 16)
    torch.testing.assert_close(b1["slab"][:, 0], affine_inplane(b0["slab"][:, 0], p, displacement=warp), rtol=0, atol=1e-6)
    p = draw_affine(plain.rng, 4, 0.1, 0.0)
    warp = elastic_displacement(draw_elastic(plain.rng, 4, 0.05), 16, 16)
    torch.testing.assert_close(b1["slices"], affine_inplane(b0["slices"], p, displacement=warp), rtol=0, atol=1e-6)
    no_warp = affine_inplane(b0["slices"], p)
    assert not torch.allclose(b1["slices"], no_warp, atol=1e-3)  # the warp is applied, not only drawn
