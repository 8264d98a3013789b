"""DiffAugment (``ctsgan.training.diffaugment``) and its use in the CT-SGAN recipe.

The transforms must move or mask every slice of a sample together (a slab stays a 3D-consistent
slab), fill with air, keep gradients, replay from the caller's generator, and be applied to every
discriminator input, real and generated, in the D and the G phase (DiffAugment's rule: augmenting
reals alone teaches G to make augmented images).
"""

from __future__ import annotations

import pytest
import torch

from ctsgan.training.diffaugment import cutout, diff_augment, translate
from ctsgan.training.recipe import GanNetworks
from ctsgan.training.recipes import get_recipe
from ctsgan.training.recipes.ctsgan import CTSGANConfig, build_discriminator, build_generator
from training_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _square_batch(b: int = 8, t: int = 4, s: int = 16) -> torch.Tensor:
    x = torch.zeros(b, 1, t, s, s)
    x[..., 6:10, 6:10] = 1.0
    return x


def test_translation_shifts_each_sample_rigidly_and_fills_with_air() -> None:
    x = _square_batch()
    y = translate(x, torch.Generator().manual_seed(0))
    shifts = set()
    for i in range(x.shape[0]):
        ones = torch.nonzero(y[i, 0, 0] == 1.0)
        assert len(ones) == 16  # the square moved whole (shift <= 2 of 16 keeps it inside)
        dy, dx = (ones.min(0).values - 6).tolist()
        assert abs(dy) <= 2 and abs(dx) <= 2
        shifts.add((dy, dx))
        assert torch.equal(y[i, 0, 0], y[i, 0, 3])  # every slice of the sample moved the same way
        expected = torch.roll(x[i, 0, 0], (dy, dx), dims=(0, 1))
        moved_in = torch.ones(16, 16, dtype=torch.bool)
        moved_in[: max(dy, 0), :] = False
        moved_in[16 + min(dy, 0):, :] = False
        moved_in[:, : max(dx, 0)] = False
        moved_in[:, 16 + min(dx, 0):] = False
        assert torch.equal(y[i, 0, 0][moved_in], expected[moved_in])
        assert torch.all(y[i, 0, 0][~moved_in] == -1.0)  # the gap is air
    assert len(shifts) > 1  # samples move independently


def test_cutout_masks_one_square_per_sample_in_every_slice() -> None:
    x = torch.ones(8, 3, 16, 16)
    y = cutout(x, torch.Generator().manual_seed(0))
    for i in range(8):
        zeros = y[i, 0] == 0
        assert 0 < int(zeros.sum()) <= 64  # at most an 8x8 square (less at the border)
        rows, cols = torch.nonzero(zeros).unbind(1)
        assert int(zeros.sum()) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle
        assert torch.equal(y[i, 0], y[i, 2])


def test_augmentations_keep_gradients_and_replay_from_the_generator() -> None:
    x = torch.randn(4, 1, 4, 16, 16, requires_grad=True)
    y1 = diff_augment(x, ["translation", "cutout"], torch.Generator().manual_seed(3))
    y2 = diff_augment(x, ["translation", "cutout"], torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2)
    y1.sum().backward()
    assert x.grad is not None
    # each kept output voxel takes its value from exactly one input voxel
    assert float(x.grad.sum()) == float(((y1 != -1.0) & (y1 != 0.0)).sum())


def test_empty_policy_is_the_identity_and_draws_nothing() -> None:
    x = torch.randn(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert diff_augment(x, [], g) is x
    assert torch.equal(g.get_state(), state)
    with pytest.raises(ValueError, match="unknown augmentation 'color'"):
        diff_augment(x, ["color"], g)


def _cutout_seen(tensors: list[torch.Tensor], s: int) -> bool:
    """Every sample of every batch holds a block of exact zeros (cutout's mark) of >= (s/4)^2 voxels."""
    return all(int((x[i] == 0).flatten().sum()) >= (s // 4) ** 2 for x in tensors for i in range(x.shape[0]))


@pytest.mark.parametrize("phase", ["d", "g"])
def test_every_discriminator_input_is_augmented(phase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = get_recipe("ctsgan").load_config("tiny")
    assert isinstance(cfg, CTSGANConfig)
    cfg.augment = ["cutout"]
    torch.manual_seed(0)
    nets = GanNetworks(build_generator(cfg), build_discriminator(cfg))
    seen: dict[str, list[torch.Tensor]] = {"d_slice": [], "d_slab": []}
    for name in seen:
        part = getattr(nets.discriminator, name)
        original = part.forward
        monkeypatch.setattr(part, "forward", lambda x, *a, _o=original, _n=name: (seen[_n].append(x.detach()), _o(x, *a))[1])
    g = torch.Generator().manual_seed(7)
    s, t, n_pos = cfg.size, cfg.slab_depth, cfg.size - 2
    real = {
        "slab": torch.rand(2, 1, t, s, s, generator=g) * 2 - 1 + 3,  # no exact zeros in the inputs themselves
        "slab_positions": torch.randint(0, n_pos - t + 1, (2,), generator=g),
        "slices": torch.rand(2 * cfg.n_slices, 3, s, s, generator=g) * 2 - 1 + 3,
        "positions": torch.randint(0, n_pos, (2 * cfg.n_slices,), generator=g),
    }
    recipe = get_recipe("ctsgan")
    if phase == "d":
        recipe.d_step(nets, real, cfg, torch.Generator().manual_seed(0), penalty_weight=0.0)
        assert [len(v) for v in seen.values()] == [2, 2]  # real and fake, each D
    else:
        recipe.g_step(nets, 2, cfg, torch.Generator().manual_seed(0))
        assert [len(v) for v in seen.values()] == [1, 1]
    assert _cutout_seen(seen["d_slice"], s) and _cutout_seen(seen["d_slab"], s)
