"""The metric registry: each metric turns the features of the real set and one generated set
into a dict of named results (merged into that set's entry of ``metrics.json``).

Add a metric with ``@register_metric("name")``; ``evaluate(..., metrics=[...])`` picks them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctsgan.metrics.features import SetFeatures
from ctsgan.metrics.fid import frechet_distance
from ctsgan.metrics.fid_2p5d import Plane, fid_2p5d
from ctsgan.metrics.inception import InceptionFeatures
from ctsgan.metrics.inception_score import inception_score
from ctsgan.metrics.memorization import FEATURE_RATIO, SSIM_THRESHOLD, memorization_check
from ctsgan.metrics.structure import (
    VolumeStructure,
    copy_distances,
    structure_metrics_from_summaries,
    z_profile_bootstrap,
    z_profile_sampling_floor,
)

IS_UNAVAILABLE = "IS unavailable: no logits model; pass --is-weights PATH"


@dataclass
class EvalContext:
    """What the metrics read.

    Attributes:
        real: features of the real set.
        train: features of the training set (memorization), or None.
        extractor: the Inception (for IS logits).
        pairs: number of (real, generated) pairs for the paper FID; None = one per generated volume.
    """

    real: SetFeatures
    train: SetFeatures | None
    extractor: InceptionFeatures
    pairs: int | None = None
    ssim_threshold: float = SSIM_THRESHOLD
    feature_ratio: float = FEATURE_RATIO


MetricFn = Callable[[EvalContext, SetFeatures], dict[str, Any]]
METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator: add the function to :data:`METRICS` under ``name``."""

    def add(fn: MetricFn) -> MetricFn:
        METRICS[name] = fn
        return fn

    return add


def check_metric_names(names: Sequence[str]) -> list[str]:
    """Validate metric names; ValueError lists the valid ones."""
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {sorted(METRICS)}")
    return list(names)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def slice_fid_pairs(
    real: Sequence[np.ndarray], fake: Sequence[np.ndarray], pairs: int | None = None
) -> list[tuple[int, int, float]]:
    """The paper's FID: per (real volume, generated volume) pair, FID of their axial slice features.

    Pair k is (real[k mod R], fake[k]) for k < K, K = ``pairs`` or len(fake) (at most len(fake)).

    Args:
        real: per real volume (D, F) features of its slices, in order.
        fake: per generated volume (D, F).

    Returns:
        (real index, fake index, FID) per pair.
    """
    if not real or not fake:
        return []
    k = len(fake) if pairs is None else min(pairs, len(fake))
    return [(j % len(real), j, frechet_distance(real[j % len(real)], fake[j])) for j in range(k)]


def volume_inception_scores(axial: Sequence[np.ndarray], extractor: InceptionFeatures) -> list[float]:
    """IS of each volume over its axial slices (``logits_unbiased`` of the pool features)."""
    return [inception_score(extractor.logits(f)) for f in axial]


def is_entry(axial: Sequence[np.ndarray], extractor: InceptionFeatures, prefix: str = "is") -> dict[str, Any]:
    """``{is_mean, is_std, is_per_volume, is_reason}``; null values and the reason without logits."""
    if not extractor.has_logits:
        return {f"{prefix}_mean": None, f"{prefix}_std": None, f"{prefix}_reason": IS_UNAVAILABLE}
    scores = volume_inception_scores(axial, extractor)
    mean, std = mean_std(scores)
    return {f"{prefix}_mean": mean, f"{prefix}_std": std, f"{prefix}_per_volume": scores, f"{prefix}_reason": None}


@register_metric("fid_slice")
def fid_slice(ctx: EvalContext, fake: SetFeatures) -> dict[str, Any]:
    """Paper FID: slice FID per (real, generated) volume pair, mean +- std over pairs."""
    res = slice_fid_pairs(ctx.real.axial, fake.axial, ctx.pairs)
    values = [v for _, _, v in res]
    mean, std = mean_std(values)
    return {
        "fid_slice_mean": mean,
        "fid_slice_std": std,
        "fid_slice_pairs": [
            {"real": ctx.real.volumes[i], "fake": fake.volumes[j], "fid": v} for i, j, v in res
        ],
    }


@register_metric("is_slice")
def is_slice(ctx: EvalContext, fake: SetFeatures) -> dict[str, Any]:
    """Paper IS: IS over each generated volume's slices, mean +- std over the paired volumes."""
    k = len(fake.axial) if ctx.pairs is None else min(ctx.pairs, len(fake.axial))
    return is_entry(fake.axial[:k], ctx.extractor)


@register_metric("fid_2p5d")
def fid_2p5d_metric(ctx: EvalContext, fake: SetFeatures) -> dict[str, Any]:
    """2.5D FID of the whole sets (mean of axial, coronal, sagittal FIDs)."""
    real = {p: np.concatenate(ctx.real.planes[p]) for p in Plane}
    gen = {p: np.concatenate(fake.planes[p]) for p in Plane}
    out: dict[str, Any] = dict(fid_2p5d(real, gen))
    out["fid_2p5d_samples"] = {"real": int(real[Plane.AXIAL].shape[0]), "fake": int(gen[Plane.AXIAL].shape[0])}
    return out


@register_metric("memorization")
def memorization(ctx: EvalContext, fake: SetFeatures) -> dict[str, Any]:
    """Nearest training volume of each generated volume; near-copies flagged."""
    if ctx.train is None or ctx.train.descriptors is None or fake.descriptors is None:
        return {"memorization": None}
    res = memorization_check(
        fake.volumes, fake.descriptors, fake.small,
        ctx.train.volumes, ctx.train.descriptors, ctx.train.small,
        ssim_threshold=ctx.ssim_threshold, feature_ratio=ctx.feature_ratio,
    )
    return {"memorization": res.to_dict()}


def structure_entry(real: Sequence[VolumeStructure], fake: Sequence[VolumeStructure]) -> dict[str, Any]:
    """Structure metrics of two sets of summaries plus the generated set's mean z-profile.

    Returns:
        :func:`ctsgan.metrics.structure.structure_metrics_from_summaries`'s dict,
        ``z_profile_mean`` ((4, bins) nested lists: lung, soft, fat, bone, for the figure),
        ``z_profile_floor`` (:func:`ctsgan.metrics.structure.z_profile_sampling_floor`: what a
        perfect generator's set of ``len(fake)`` volumes scores against this real set),
        ``z_profile_bootstrap`` (:func:`ctsgan.metrics.structure.z_profile_bootstrap`: the 90 %
        interval of the generated set's z-profile error, its volumes resampled) and,
        with two or more real volumes, ``real_pair_hu`` (the smallest mean |HU| difference of
        two real volumes' 32^3 cubes) and ``closer_than_real_pair`` (how many generated volumes
        come closer than that to a real one: what ``generate --guard`` rejects when the real set
        is the training set); with an empty side, ``{"structure": None, "structure_reason": ...}``.
    """
    if not real or not fake:
        return {"structure": None, "structure_reason": "no structure summaries (volumes need >= 2 slices)"}
    out = structure_metrics_from_summaries(real, fake)
    out["z_profile_mean"] = np.mean([s.profile for s in fake], axis=0).tolist()
    out["z_profile_floor"] = z_profile_sampling_floor([s.profile for s in real], len(fake))
    out["z_profile_bootstrap"] = z_profile_bootstrap([s.profile for s in real], [s.profile for s in fake])
    copies = copy_distances(real, fake)  # empty with fewer than two real volumes
    if copies:
        out |= {"real_pair_hu": copies["train_nearest_other_hu"], "closer_than_real_pair": int(copies["closer_than_train_pair"])}
    return out


@register_metric("structure")
def structure(ctx: EvalContext, fake: SetFeatures) -> dict[str, Any]:
    """3D structure against the real set: z-profile error (0 = real head-to-feet layout, 1 = flat),
    z-variation ratio and diversity ratio (1 = like real; see :mod:`ctsgan.metrics.structure`)."""
    return structure_entry(ctx.real.structure, fake.structure)


DEFAULT_METRICS = ("fid_slice", "is_slice", "fid_2p5d", "memorization", "structure")
