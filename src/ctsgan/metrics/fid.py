"""Frechet Inception Distance on feature vectors (the maths is torchmetrics').

``FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` with unbiased covariances, computed by
``torchmetrics.image.fid._compute_fid`` (eigenvalues of S1 S2), not by a hand-written sqrtm.

Few samples in many dimensions (a 64-slice volume gives 64 vectors of 2048 features) make both
covariances rank deficient. That is fine for the formula, and it lets us work exactly in a much
smaller space: both covariances live in the span of the centred samples, so with an orthonormal
basis Q (F x r, r <= N1 + N2) of that span, ``Tr(S) = Tr(Q^T S Q)`` and the eigenvalues of S1 S2
are those of (Q^T S1 Q)(Q^T S2 Q) plus zeros. The mean term keeps the full F dimensions. So the
same torchmetrics call runs on r x r matrices instead of 2048 x 2048 ones (milliseconds instead
of seconds per pair); ``tests/test_fid.py`` checks both routes agree.
"""

from __future__ import annotations

import numpy as np
import torch


def _compute_fid(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    from torchmetrics.image.fid import _compute_fid as tm_compute_fid

    return tm_compute_fid(mu1, sigma1, mu2, sigma2)


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor, reduce: bool = True) -> float:
    """FID between two sets of feature vectors.

    Args:
        features_a: (N1, F), N1 >= 2.
        features_b: (N2, F), N2 >= 2.
        reduce: work in the span of the centred samples when N1 + N2 < F (exact; much faster).

    Returns:
        the Frechet distance (float; rounding below 0, e.g. -1e-9 for identical sets, is clamped to 0).

    Raises:
        ValueError: bad shapes, fewer than 2 samples, non-finite features, or a non-finite
            result (a NaN is never turned into a score, least of all a perfect 0).
    """
    a = torch.as_tensor(np.asarray(features_a) if isinstance(features_a, np.ndarray) else features_a, dtype=torch.float64)
    b = torch.as_tensor(np.asarray(features_b) if isinstance(features_b, np.ndarray) else features_b, dtype=torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features (N1, F) and (N2, F), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {a.shape[0]} and {b.shape[0]}")
    for name, t in (("first", a), ("second", b)):
        bad = int(t.numel() - torch.isfinite(t).sum())
        if bad:
            raise ValueError(f"FID: the {name} feature set holds {bad} NaN / infinite values")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    if reduce and a.shape[0] + b.shape[0] < a.shape[1]:
        q, _ = torch.linalg.qr(torch.cat([ca, cb]).T)  # (F, N1+N2), orthonormal columns
        ca, cb = ca @ q, cb @ q
    sigma_a = ca.T @ ca / (a.shape[0] - 1)
    sigma_b = cb.T @ cb / (b.shape[0] - 1)
    value = _compute_fid(mu_a, sigma_a, mu_b, sigma_b)
    fid = float(value.real if value.is_complex() else value)
    if not np.isfinite(fid):
        raise ValueError(f"FID is not finite ({fid}) for finite features; refusing to report it")
    return fid if fid > 0.0 else 0.0
