"""GAN losses and penalties against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ctsgan.losses.gan import (
    LeCamAnchors,
    d_loss,
    discriminator_objective,
    g_loss,
    r1_penalty,
    wgan_gp_penalty,
)


def test_js_loss_at_zero_logits_is_two_log_two() -> None:
    z = torch.zeros(4)
    assert d_loss(z, z, "js").item() == pytest.approx(2 * math.log(2))
    assert g_loss(z, "js").item() == pytest.approx(math.log(2))


def test_js_loss_values() -> None:
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    expected = math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))
    assert d_loss(real, fake, "js").item() == pytest.approx(expected, rel=1e-6)


def test_wgan_loss_is_mean_difference() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, 1.5])
    assert d_loss(real, fake, "wgan").item() == pytest.approx(1.0 - 2.0)
    assert g_loss(fake, "wgan").item() == pytest.approx(-1.0)


def test_r1_on_linear_critic_is_half_gamma_weight_norm() -> None:
    w = torch.tensor([1.0, 2.0, 2.0])  # ||w||^2 = 9
    x = torch.randn(5, 3, requires_grad=True)
    assert r1_penalty(x @ w, x, gamma=4.0).item() == pytest.approx(0.5 * 4.0 * 9.0, rel=1e-6)


def test_wgan_gp_on_linear_critic() -> None:
    w = torch.tensor([[0.0, 2.0]])  # ||grad|| = 2 everywhere -> (2 - 1)^2 = 1
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    pen = wgan_gp_penalty(lambda x: (x * w).sum(1), real, fake, weight=10.0, generator=torch.Generator().manual_seed(0))
    assert pen.item() == pytest.approx(10.0, rel=1e-5)


def test_discriminator_objective_adds_penalty_and_keeps_grad_to_params() -> None:
    lin = torch.nn.Linear(3, 1)
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    total, s = discriminator_objective(lambda x: lin(x).squeeze(1), real, fake, "js", "r1", 2.0)
    w2 = lin.weight.detach().pow(2).sum().item()
    assert s["penalty"].item() == pytest.approx(w2, rel=1e-5)  # gamma/2 * ||w||^2 with gamma 2
    assert total.item() == pytest.approx(s["adv"].item() + s["penalty"].item(), rel=1e-6)
    total.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("fn", "arg"), [(d_loss, "hinge"), (g_loss, "hinge")])
def test_bad_loss_name_lists_valid_ones(fn, arg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"\['js', 'wgan', 'lsgan'\]"):
        fn(torch.zeros(1), torch.zeros(1), arg) if fn is d_loss else fn(torch.zeros(1), arg)


def test_bad_penalty_name() -> None:
    with pytest.raises(ValueError, match="penalty must be one of"):
        discriminator_objective(lambda x: x.sum(1), torch.zeros(2, 2), torch.zeros(2, 2), "js", "gp", 1.0)


def test_lsgan_matches_monai_patch_adversarial_loss() -> None:
    """``lsgan`` gives MONAI's least-squares PatchAdversarialLoss numbers on raw patch logits (D: the
    mean of its real and fake terms; G: its generator term)."""
    from monai.losses import PatchAdversarialLoss

    torch.manual_seed(0)
    real, fake = torch.randn(2, 1, 3, 3, 3), torch.randn(2, 1, 3, 3, 3)
    monai = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)
    d_ref = 0.5 * (monai(real, target_is_real=True, for_discriminator=True)
                   + monai(fake, target_is_real=False, for_discriminator=True))
    torch.testing.assert_close(d_loss(real, fake, "lsgan"), d_ref)
    torch.testing.assert_close(g_loss(fake, "lsgan"), monai(fake, target_is_real=True, for_discriminator=False))
    assert float(d_loss(torch.ones(4), torch.zeros(4), "lsgan")) == 0.0  # a perfect D


def test_lecam_anchors_move_by_the_decay_and_penalise_by_hand() -> None:
    """Anchors start at 0; decay 0.9 and batch means 2 / -4 move them to 0.2 / -0.4. Penalty for
    real logits [1, -1], fake [0, -1]: relu(1 - -0.4)^2 = 1.96, relu(-1 + 0.4)^2 = 0, mean 0.98;
    relu(0.2 - 0)^2 = 0.04, relu(0.2 + 1)^2 = 1.44, mean 0.74; total 1.72."""
    a = LeCamAnchors(0.9)
    a.update(torch.tensor([1.0, 3.0]), torch.tensor([-4.0]))
    assert a.real.item() == pytest.approx(0.2) and a.fake.item() == pytest.approx(-0.4)
    assert a.penalty(torch.tensor([1.0, -1.0]), torch.tensor([0.0, -1.0])).item() == pytest.approx(1.72)
    assert set(a.state_dict()) == {"real", "fake"}
    with pytest.raises(ValueError, match="decay"):
        LeCamAnchors(1.0)


def test_discriminator_objective_adds_the_lecam_term_after_updating_its_anchors() -> None:
    """Critic x -> 2x: real logits [2, 4], fake [-2]; anchors (decay 0) become 3 / -2; LeCam term
    0.5 * (mean relu([2, 4] + 2)^2 + relu(3 + 2)^2) = 0.5 * (26 + 25) = 25.5 on top of the plain loss."""
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([-1.0])
    plain, _ = discriminator_objective(lambda x: 2 * x, real, fake, "js", "none", 0.0)
    anchors = LeCamAnchors(0.0)
    total, scalars = discriminator_objective(lambda x: 2 * x, real, fake, "js", "none", 0.0, lecam=anchors, lecam_weight=0.5)
    assert anchors.real.item() == pytest.approx(3.0) and anchors.fake.item() == pytest.approx(-2.0)
    assert (total - plain).item() == pytest.approx(25.5) and scalars["lecam"].item() == pytest.approx(25.5)
    untouched = LeCamAnchors(0.0)
    same, s = discriminator_objective(lambda x: 2 * x, real, fake, "js", "none", 0.0, lecam=untouched, lecam_weight=0.0)
    assert same.item() == pytest.approx(plain.item()) and "lecam" not in s and untouched.real.item() == 0.0
    with pytest.raises(ValueError, match="LeCamAnchors"):
        discriminator_objective(lambda x: 2 * x, real, fake, "js", "none", 0.0, lecam_weight=0.5)
