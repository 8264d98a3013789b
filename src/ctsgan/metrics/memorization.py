"""Memorization check: is any generated volume a near-copy of a training volume?

Synthetic CTs are meant to be shared without patient data, so every generated volume is compared
with every training volume in two ways:

- **feature distance**: Euclidean distance between volume descriptors, the mean Inception pool
  feature (2048-d) over a fixed set of axial slices at the same relative positions;
- **SSIM**: ``skimage.metrics.structural_similarity`` between the two volumes, windowed to
  [0, 1] (HU [-1024, 600]) and downsampled to a small cube (3-D SSIM, ``data_range=1``).

Each generated volume's nearest training volume (smallest distance, highest SSIM) is set against
the real-vs-real nearest-neighbour values (each training volume's nearest *other* training
volume). A generated volume is flagged as a near-copy when

- its SSIM to the nearest training volume is >= ``ssim_threshold`` (default 0.95) *and* higher
  than every real-vs-real nearest-neighbour SSIM (so a set of very similar real scans does not
  flag everything; with one training volume only the 0.95 applies), or
- its feature distance is <= ``feature_ratio`` (default 0.5) x the smallest real-vs-real
  nearest-neighbour feature distance (only when there are >= 2 training volumes),

i.e. when it is closer to a training scan than any two different patients are to each other.

With a handful of training scans a per-volume threshold says little, so :func:`copying_rank_test`
also asks the question of the data-copying test of Meehan, Chaudhuri and Dasgupta (AISTATS 2020)
for the whole set: are generated volumes closer to their nearest training scan than *new*
patients are to theirs?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ctsgan.data.hu import hu_to_unit

SSIM_THRESHOLD = 0.95
FEATURE_RATIO = 0.5


def downsample_for_ssim(volume_hu: np.ndarray, size: int = 32) -> np.ndarray:
    """(z, y, x) HU -> (size, size, size) float32 in [0, 1] (network window), trilinear.

    [0, 1] rather than [-1, 1]: SSIM's luminance and structure terms both turn negative for
    an inverted pair of signed images, and their product would look similar.
    """
    from ctsgan.metrics.volume_sets import resample_volume

    unit = (np.asarray(hu_to_unit(volume_hu), dtype=np.float32) + 1.0) * 0.5
    if unit.shape != (size,) * 3:
        unit = resample_volume(unit, (size, size, size))
    return np.clip(unit, 0.0, 1.0)


def ssim_volumes(a: np.ndarray, b: np.ndarray) -> float:
    """3-D SSIM of two volumes of equal shape in [0, 1] (``data_range=1``, 7^3 window)."""
    from skimage.metrics import structural_similarity

    if a.shape != b.shape:
        raise ValueError(f"SSIM needs equal shapes, got {a.shape} and {b.shape}")
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def copying_rank_test(generated_nearest: Sequence[float], new_nearest: Sequence[float]) -> dict[str, float | int]:
    """Are generated volumes closer to the training set than new patients are? (one-sided
    Mann-Whitney U, as the data-copying test of Meehan et al. 2020 compares the two distance sets).

    Args:
        generated_nearest: each generated volume's distance to its nearest training volume.
        new_nearest: the same distance for real scans the generator did not see (e.g. a held-out
            scan, or each real scan against the others, leave-one-out).

    Returns:
        ``auc_closer``: the chance that a generated volume is closer than a new patient (ties
        count half): 0.5 = as close as new patients, 1 = every generated volume closer than every
        new patient (copying), under 0.5 = farther (the training patients not yet learned);
        ``p_closer``: one-sided p-value of "generated closer" (small: copying); ``n_generated``,
        ``n_new``.

    Raises:
        ValueError: either set is empty.
    """
    from scipy.stats import mannwhitneyu

    g, r = np.asarray(generated_nearest, np.float64), np.asarray(new_nearest, np.float64)
    if g.size == 0 or r.size == 0:
        raise ValueError(f"need distances in both sets, got {g.size} generated and {r.size} new")
    closer = (g[:, None] < r[None, :]).mean() + 0.5 * (g[:, None] == r[None, :]).mean()
    p = float(mannwhitneyu(g, r, alternative="less").pvalue)
    return {"auc_closer": round(float(closer), 4), "p_closer": round(p, 4), "n_generated": int(g.size), "n_new": int(r.size)}


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (M, T) between descriptors a (M, F) and b (T, F)."""
    from scipy.spatial.distance import cdist

    return cdist(np.asarray(a, np.float64), np.asarray(b, np.float64))


@dataclass
class MemorizationResult:
    """Nearest training volumes of generated volumes, and real-vs-real reference values.

    Lists are per generated volume (``names`` order) or per training volume (``train_*``).
    """

    names: list[str]
    nearest_by_feature: list[str]
    feature_distance: list[float]
    nearest_by_ssim: list[str]
    ssim: list[float]
    train_names: list[str]
    train_nn_feature_distance: list[float]
    train_nn_ssim: list[float]
    feature_threshold: float | None
    ssim_threshold: float
    ssim_reference: float | None
    flagged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_flagged"] = len(self.flagged)
        ref = f" and > {self.ssim_reference:.4g} (max real-vs-real NN SSIM)" if self.ssim_reference is not None else ""
        feat = f"{self.feature_threshold:.4g}" if self.feature_threshold is not None else "n/a (one training volume)"
        d["rule"] = (
            f"near-copy if SSIM >= {self.ssim_threshold}{ref}, or feature distance <= {feat}"
            " (feature_ratio x min real-vs-real NN feature distance)"
        )
        return d


def memorization_check(
    names: Sequence[str],
    descriptors: np.ndarray,
    small: Sequence[np.ndarray],
    train_names: Sequence[str],
    train_descriptors: np.ndarray,
    train_small: Sequence[np.ndarray],
    ssim_threshold: float = SSIM_THRESHOLD,
    feature_ratio: float = FEATURE_RATIO,
) -> MemorizationResult:
    """Nearest training volume of each generated volume, by feature distance and by SSIM.

    Args:
        names: M generated volume names.
        descriptors: (M, F) generated volume descriptors.
        small: M downsampled generated volumes (from :func:`downsample_for_ssim`).
        train_names: T training volume names.
        train_descriptors: (T, F).
        train_small: T downsampled training volumes.
        ssim_threshold: flag SSIM >= this.
        feature_ratio: flag feature distance <= ratio x min real-vs-real NN distance.
    """
    m, t = len(names), len(train_names)
    if descriptors.shape[0] != m or len(small) != m or train_descriptors.shape[0] != t or len(train_small) != t:
        raise ValueError("names, descriptors and downsampled volumes must have matching lengths")
    if t == 0:
        raise ValueError("memorization check needs at least one training volume")
    dist = pairwise_distances(descriptors, train_descriptors)  # (M, T)
    ssim = np.array([[ssim_volumes(a, b) for b in train_small] for a in small]).reshape(m, t)
    train_dist = pairwise_distances(train_descriptors, train_descriptors)
    np.fill_diagonal(train_dist, np.inf)
    train_ssim = np.full((t, t), -np.inf)
    for i in range(t):
        for j in range(i + 1, t):
            train_ssim[i, j] = train_ssim[j, i] = ssim_volumes(train_small[i], train_small[j])
    train_nn_dist = train_dist.min(axis=1) if t > 1 else np.zeros(0)
    train_nn_ssim = train_ssim.max(axis=1) if t > 1 else np.zeros(0)
    feat_thr = float(feature_ratio * train_nn_dist.min()) if t > 1 else None
    ssim_ref = float(train_nn_ssim.max()) if t > 1 else None
    nn_f = dist.argmin(axis=1) if m else np.zeros(0, dtype=int)
    nn_s = ssim.argmax(axis=1) if m else np.zeros(0, dtype=int)
    best_d = dist[np.arange(m), nn_f] if m else np.zeros(0)
    best_s = ssim[np.arange(m), nn_s] if m else np.zeros(0)
    flagged = [
        names[i]
        for i in range(m)
        if (best_s[i] >= ssim_threshold and (ssim_ref is None or best_s[i] > ssim_ref))
        or (feat_thr is not None and best_d[i] <= feat_thr)
    ]
    return MemorizationResult(
        names=list(names),
        nearest_by_feature=[train_names[j] for j in nn_f],
        feature_distance=[float(v) for v in best_d],
        nearest_by_ssim=[train_names[j] for j in nn_s],
        ssim=[float(v) for v in best_s],
        train_names=list(train_names),
        train_nn_feature_distance=[float(v) for v in train_nn_dist],
        train_nn_ssim=[float(v) for v in train_nn_ssim],
        feature_threshold=feat_thr,
        ssim_threshold=ssim_threshold,
        ssim_reference=ssim_ref,
        flagged=flagged,
    )
