"""Intervals and paired tests for the detection grid: can this run resolve the effect it measures?

Every cell stores which test scans its classifier got right (``CellResult.test_correct``). The
regimes of one (size, seed) are tested on the same real test scans, so differences between
regimes are paired:

- an accuracy's 95 % interval: Wilson's score interval for one cell; for several seeds, a
  bootstrap that resamples the test scans (the same resampled scans for every seed);
- a difference between two regimes: the paired bootstrap of the mean over seeds of
  (accuracy of A - accuracy of B), resampling test scans jointly for both regimes;
- McNemar's exact test on the discordant scans of one pair of cells (scipy's ``binomtest``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95 % interval."""

    mean: float
    lo: float
    hi: float

    def excludes_zero(self) -> bool:
        """True when the interval lies wholly above or below 0."""
        return self.lo > 0 or self.hi < 0

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``correct / n`` (95 % for the default ``z``)."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got {correct} of {n}")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _as_matrix(per_seed: Sequence[Sequence[int]]) -> np.ndarray:
    """(seeds, scans) 0/1 matrix; every seed must list the same number of test scans."""
    lengths = {len(c) for c in per_seed}
    if not per_seed or 0 in lengths or len(lengths) != 1:
        raise ValueError(f"need the same positive number of test scans for every seed, got lengths {sorted(lengths)}")
    return np.asarray(per_seed, dtype=np.float64)


def accuracy_estimate(per_seed: Sequence[Sequence[int]], n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Mean accuracy over seeds with a 95 % interval: Wilson for one seed, else a bootstrap over
    test scans (each replicate resamples the scan indices once, for every seed alike)."""
    m = _as_matrix(per_seed)
    mean = float(m.mean())
    if m.shape[0] == 1:
        lo, hi = wilson_interval(int(m.sum()), m.shape[1])
        return Estimate(mean, lo, hi)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m.shape[1], size=(n_boot, m.shape[1]))  # (B, scans)
    reps = m[:, idx].mean(axis=(0, 2))  # (B,)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return Estimate(mean, float(lo), float(hi))


def paired_difference(
    a: Sequence[Sequence[int]], b: Sequence[Sequence[int]], n_boot: int = 2000, seed: int = 0
) -> Estimate:
    """Mean over seeds of accuracy(A) - accuracy(B) with a 95 % paired-bootstrap interval.

    ``a[s][i]`` and ``b[s][i]`` are the two regimes' outcomes (1 right, 0 wrong) on test scan ``i``
    of seed ``s``; each replicate resamples the scan indices once and applies them to both.
    """
    ma, mb = _as_matrix(a), _as_matrix(b)
    if ma.shape != mb.shape:
        raise ValueError(f"paired outcomes need the same seeds and scans, got {ma.shape} and {mb.shape}")
    d = ma - mb  # (seeds, scans)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.shape[1], size=(n_boot, d.shape[1]))
    reps = d[:, idx].mean(axis=(0, 2))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return Estimate(float(d.mean()), float(lo), float(hi))


def mcnemar_p(a: Sequence[int], b: Sequence[int]) -> float:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes of two classifiers on the same scans
    (1.0 when they never disagree)."""
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same scans, got {len(a)} and {len(b)}")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
