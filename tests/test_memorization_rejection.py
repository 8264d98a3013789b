"""Memorization rejection (``memorization_threshold`` / ``memorization_repel``, training/memorization.py):
distances and thresholds by hand, the sampler's reference slabs, and G's loss without its near-copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsgan.losses.gan import g_loss, g_loss_per_sample
from ctsgan.training.memorization import (
    closest_pair_thresholds,
    masked_mean,
    nearest_slab_distance,
    pool_inplane,
)
from ctsgan.training.recipe import GanNetworks
from ctsgan.training.recipes import get_recipe
from ctsgan.training.recipes.ctsgan import CTSGANConfig, CTSGANSampler, build_discriminator, build_generator
from training_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**over: object) -> CTSGANConfig:
    cfg = get_recipe("ctsgan").load_config("tiny")
    assert isinstance(cfg, CTSGANConfig)
    return CTSGANConfig.from_dict({**cfg.model_dump(), **over}, source="test")


def test_closest_pair_threshold_by_hand() -> None:
    """Three constant volumes 0, 0.3, 1.0: the closest pair is 0.3 apart at every start; raising
    slice 5 of the second by 0.8 (0.3 -> 1.1 there, so its pairs become 1.1 and 0.1 apart on that
    slice) changes the windows that hold slice 5, where the pair (2nd, 3rd) is then closest."""
    vols = torch.stack([torch.full((10, 2, 2), v) for v in (0.0, 0.3, 1.0)])  # (V, L + 2 = 10, R, R)
    t = 3
    tau = closest_pair_thresholds(vols, t)
    assert tau.shape == (10 - 2 - t + 1,)  # 6 starts: slab k0 = slices k0+1 .. k0+3
    assert torch.allclose(tau, torch.full((6,), 0.3))
    vols[1, 5] += 0.8
    tau = closest_pair_thresholds(vols, t)
    # starts 2, 3, 4 hold slice 5: (1st, 2nd) -> (0.3 * 2 + 1.1) / 3, (2nd, 3rd) -> (0.7 * 2 + 0.1) / 3 = 0.5
    assert torch.allclose(tau, torch.tensor([0.3, 0.3, 0.5, 0.5, 0.5, 0.3]))
    with pytest.raises(ValueError, match=">= 2"):
        closest_pair_thresholds(vols[:1], t)


def test_nearest_slab_distance_and_masked_mean_by_hand() -> None:
    """A constant 0.5 slab against references at 0 and 0.6 is 0.1 from the nearest; pooling is a 2 x 2 mean."""
    fake = torch.full((2, 3, 4, 4), 0.5)
    fake[1] = -0.2
    ref = torch.stack([torch.zeros(3, 2, 2), torch.full((3, 2, 2), 0.6)])[None].repeat(2, 1, 1, 1, 1)  # (B, V, T, 2, 2)
    assert torch.allclose(nearest_slab_distance(fake, ref), torch.tensor([0.1, 0.2]))
    x = torch.arange(16.0).reshape(1, 4, 4)
    assert torch.equal(pool_inplane(x), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))
    values = torch.tensor([1.0, 5.0, 9.0], requires_grad=True)
    assert float(masked_mean(values, torch.tensor([True, False, True])).detach()) == 5.0
    none = masked_mean(values, torch.zeros(3, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


@pytest.mark.parametrize("kind", ["js", "lsgan", "wgan"])
def test_per_sample_g_loss_means_to_the_g_loss(kind: str) -> None:
    logits = torch.randn(6, 1)
    per = g_loss_per_sample(logits, kind)
    assert per.shape == (6,)
    assert float(per.mean()) == pytest.approx(float(g_loss(logits, kind)), rel=1e-6)
    assert float(per[2]) == pytest.approx(float(g_loss(logits[2:3], kind)), rel=1e-6)


def test_sampler_carries_the_training_slabs_at_each_rows_position(tmp_path: object) -> None:
    """With a threshold, each row's reference is every training volume's pooled slab at that row's
    start, and its threshold m x the closest pair there; the real batch itself is the one drawn
    without it (no extra random numbers)."""
    from conftest import write_tiny_dataset
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.data.hu import hu_to_unit

    root = write_tiny_dataset(tmp_path / "data")  # type: ignore[operator]
    ds = PreparedDataset(root, split="train")
    plain = CTSGANSampler(ds, (0, 0), _cfg()).sample(3)
    cfg = _cfg(memorization_threshold=0.5)
    batch = CTSGANSampler(ds, (0, 0), cfg).sample(3)
    assert "memo_ref" not in plain
    assert torch.equal(batch["slab"], plain["slab"]) and torch.equal(batch["positions"], plain["positions"])
    vols = torch.from_numpy(np.stack([hu_to_unit(ds.load(i), *cfg.hu_window) for i in range(len(ds))])).float()
    t = cfg.slab_depth
    assert batch["memo_ref"].shape == (3, len(ds), t, cfg.size // 2, cfg.size // 2)
    for b in range(3):
        k0 = int(batch["slab_positions"][b])
        slabs = pool_inplane(vols[:, k0 + 1 : k0 + 1 + t])
        assert torch.allclose(batch["memo_ref"][b], slabs)
        pairs = [float((slabs[i] - slabs[j]).abs().mean()) for i in range(len(ds)) for j in range(i + 1, len(ds))]
        assert float(batch["memo_tau"][b]) == pytest.approx(0.5 * min(pairs), rel=1e-5)


def _g_step_against(
    reference_of: str, repel: float = 0.0, reject: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """G's loss for a 2-volume batch whose reference makes volume 0 a copy (its own slab) or not (far);
    the expected adversarial part (the whole batch's when nothing is rejected)."""
    recipe = get_recipe("ctsgan")
    cfg = _cfg(memorization_threshold=1.0, memorization_repel=repel, memorization_reject=reject, reuse_fakes=False)
    torch.manual_seed(0)
    nets = GanNetworks(build_generator(cfg), build_discriminator(cfg))
    nets.discriminator.requires_grad_(False)
    from ctsgan.training.recipes.ctsgan import render_training_views

    k0 = torch.tensor([1, 1])
    with torch.no_grad():
        views = render_training_views(nets.generator, cfg, 2, torch.Generator().manual_seed(4), torch.device("cpu"), slab_positions=k0)
    own = pool_inplane(views["slab"][:, 0])  # (B, T, R, R)
    far = own + 1.5
    ref = torch.stack([torch.stack([own[0] if reference_of == "copy" else far[0], far[0]]), torch.stack([far[1], far[1]])])
    real = {"slab_positions": k0, "memo_ref": ref, "memo_tau": torch.tensor([1.0, 1.0])}
    loss, scalars = recipe.g_step(nets, 2, cfg, torch.Generator().manual_seed(4), real=real)
    with torch.no_grad():
        d = nets.discriminator
        slab_l = g_loss_per_sample(d.d_slab(views["slab"], views["slab_positions"]), cfg.loss)
        slice_l = g_loss_per_sample(d.d_slice(views["slices"], views["positions"]), cfg.loss)
    rejected = reference_of == "copy" and reject
    expected = (slab_l[1], slice_l[cfg.n_slices :].mean()) if rejected else (slab_l.mean(), slice_l.mean())
    return loss, scalars, cfg.slab_weight * expected[0] + cfg.slice_weight * expected[1]


def test_a_near_copy_leaves_g_loss() -> None:
    """Volume 0 at distance 0 from a training slab (threshold 1): G's loss is volume 1's slab and
    slices alone; with no copy it is the whole batch's loss."""
    loss, scalars, expected = _g_step_against("copy")
    assert float(scalars["g/memorized"]) == 0.5
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    loss_far, scalars_far, expected_far = _g_step_against("far")
    assert float(scalars_far["g/memorized"]) == 0.0
    assert float(loss_far.detach()) == pytest.approx(float(expected_far), rel=1e-5)
    assert abs(float(loss.detach()) - float(loss_far.detach())) > 1e-4  # the two cases differ, so the check above can fail


def test_repel_pushes_a_near_copy_with_its_weight() -> None:
    """``memorization_repel`` w adds w x mean(relu(1 - distance / threshold)): the copy (distance 0)
    contributes 1, the far volume (1.5 away) 0, so w / 2 over the rejection-only loss."""
    loss, scalars, expected = _g_step_against("copy", repel=3.0)
    assert float(scalars["g/repel"]) == pytest.approx(0.5, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(float(expected) + 1.5, rel=1e-5)


def test_repel_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="memorization_threshold"):
        _cfg(memorization_repel=1.0)


def test_a_large_training_set_is_refused_by_name(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """More training volumes than the pair table is meant for: one line naming the dataset and both counts."""
    from conftest import write_tiny_dataset
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.training.recipes import ctsgan as recipe_module

    root = write_tiny_dataset(tmp_path / "data")  # type: ignore[operator]
    monkeypatch.setattr(recipe_module, "MEMORIZATION_MAX_VOLUMES", 3)
    with pytest.raises(ValueError, match=r"data: memorization_threshold .* at most 3 volumes, this one has 4"):
        CTSGANSampler(PreparedDataset(root, split="train"), (0, 0), _cfg(memorization_threshold=1.0))


def test_repel_only_keeps_the_copy_in_the_adversarial_loss() -> None:
    """``memorization_reject: false``: the copy is still counted as memorized and pushed away, but
    G's adversarial loss is the whole batch's."""
    loss, scalars, expected = _g_step_against("copy", repel=3.0, reject=False)
    assert float(scalars["g/memorized"]) == 0.5
    assert float(loss.detach()) == pytest.approx(float(expected) + 1.5, rel=1e-5)
    loss_rej, _, expected_rej = _g_step_against("copy", repel=3.0)
    assert abs(float(expected) - float(expected_rej)) > 1e-4  # rejecting volume 0 changes the loss, so the check can fail
    with pytest.raises(ValueError, match="memorization_repel"):
        _cfg(memorization_threshold=1.0, memorization_reject=False)
