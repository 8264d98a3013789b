"""Inception Score from class logits (the maths is torchmetrics').

``IS = exp(E_x KL(p(y|x) || p(y)))`` over one set of images, computed by
``torchmetrics.image.inception.InceptionScore`` fed with ready-made logits (its feature network
replaced by the identity). In this project a set is the slices of one volume (``splits=1``);
the paper's mean +- std is over volumes.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def inception_score(logits: np.ndarray | torch.Tensor) -> float:
    """Inception Score of one set of images.

    Args:
        logits: (N, K) class logits (e.g. Inception ``logits_unbiased``, K = 1008), N >= 1.

    Returns:
        IS in [1, K]: 1 when every image gets the same prediction, K for confident predictions
        spread evenly over K classes.
    """
    from torchmetrics.image.inception import InceptionScore

    x = torch.as_tensor(np.asarray(logits) if isinstance(logits, np.ndarray) else logits, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected logits of shape (N, K) with N >= 1, got {tuple(x.shape)}")
    # warnings silenced: "will save all extracted features" and the std of a single split
    with warnings.catch_warnings(), torch.random.fork_rng():  # compute() shuffles with the global RNG
        warnings.simplefilter("ignore", UserWarning)
        metric = InceptionScore(feature=torch.nn.Identity(), splits=1)
        metric.update(x)
        mean, _ = metric.compute()
    return float(mean)
