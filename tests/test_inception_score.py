"""Inception Score maths (torchmetrics) on hand-made logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctsgan.metrics.inception_score import inception_score


def test_uniform_predictions_score_one() -> None:
    assert inception_score(np.zeros((12, 1008))) == pytest.approx(1.0, abs=1e-9)


def test_confident_predictions_on_distinct_classes_score_the_number_of_classes() -> None:
    k = 7
    logits = np.full((k, 1008), -60.0)
    logits[np.arange(k), np.arange(k) * 3] = 60.0  # one-hot on 7 distinct classes
    assert inception_score(logits) == pytest.approx(k, rel=1e-6)


def test_all_images_the_same_confident_class_scores_one() -> None:
    logits = np.full((5, 10), -60.0)
    logits[:, 4] = 60.0
    assert inception_score(logits) == pytest.approx(1.0, abs=1e-6)


def test_mixed_value_worked_out_by_hand() -> None:
    # p1 = [1, 0], p2 = [1/2, 1/2]; marginal [3/4, 1/4]
    # KL1 = ln(4/3); KL2 = 1/2 ln(2/3) + 1/2 ln(2); IS = exp((KL1 + KL2) / 2)
    expected = math.exp((math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * math.log(2)) / 2)
    logits = np.array([[0.0, -80.0], [0.0, 0.0]])
    assert inception_score(logits) == pytest.approx(expected, rel=1e-9)


def test_bad_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        inception_score(np.zeros(5))
