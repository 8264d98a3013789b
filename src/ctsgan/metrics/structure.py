"""Metrics that see 3D structure: head-to-feet layout, slice-to-slice change, seed diversity.

The paper's slice-by-slice FID compares sets of axial slices, so a generator that repeats one
good axial slice along z (coronal / sagittal cuts are vertical streaks), or that gives nearly the
same volume for every seed, can score well. These three numbers catch that; each is "generated
vs real", so 0 / 1 has the same meaning on any data set.

- **z-profile error** (:func:`z_profile_error`): per axial slice, the fraction of the slice's
  body voxels (:func:`ctsgan.data.realism.body_mask`) in each tissue range of
  :data:`ctsgan.data.realism.TISSUE_RANGES` (lung, soft, fat, bone), binned along relative z
  (:func:`z_profiles`); the mean real curve R (4, bins) against the mean generated curve G:
  ``sum |G - R| / sum |R - mean_z(R)|``. 0 = the real head-to-feet layout; 1 = as far from it as
  a flat line at each tissue's right overall level (what a repeated slice with the right tissue
  mix gives); above 1: worse than flat. Fractions of the body rather than of the whole slice:
  on real scans the body's share of the field of view differs between patients (0.25 to 0.8 in
  ``../shared/data/chest``) and that level difference swamped the layout (real-vs-real error
  1.24 of whole-slice fractions against 0.54 of body fractions, 3 vs 3 real chests).
- **z-profile orientation** (:func:`profile_orientation`): the head/feet asymmetry of G projected
  on that of R: 1 = the same way up as real, -1 = upside down, 0 = symmetric (e.g. one slice
  repeated). Only meaningful when the real set has a consistent asymmetry: the phantoms do
  (real vs real 0.7-1.3), the six real chests of ``../shared/data/chest`` do not (-0.9 to 0.7).
- **z-variation ratio** (:func:`z_variation_ratio`): mean |v[k] - v[k + d]| (HU) inside the body,
  generated / real, for d = 1, 2, 4 slices and their mean. 1 = changes along z like real scans;
  ~0 = the same slice repeated; >> 1 = slices that do not follow each other (noise, shuffles).
- **diversity ratio** (:func:`diversity_ratio`): mean pairwise mean-absolute HU difference
  between the volumes of a set (downsampled to 32^3), generated / real. 1 = seeds differ as much
  as real patients; ~0 = every seed gives the same volume.

HU are clipped to the networks' window [-1024, 600] (:mod:`ctsgan.data.hu`) before z-variation
and diversity, so real bone above 600 HU (which no generator here can produce) does not count
as a difference. The z-profile's bone range (>= 300 HU) lies inside the window.

Every function takes (z, y, x) HU arrays (any numeric dtype, memory-mapped ``.npy`` fine) and
reads one volume at a time. For sets, :func:`volume_structure` reduces a volume to a small
summary (its profile, its z-variation, a 32^3 cube) and :func:`structure_metrics_from_summaries`
compares summaries, so ``ctsgan evaluate`` never holds a whole set in memory.

z-variation counts slices, so compare sets of the same z spacing (``ctsgan evaluate`` resamples
every volume to the real set's shape first). The z-profile uses relative z and the diversity a
fixed cube, so those compare volumes of any depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctsgan.data.realism import TISSUE_RANGES, body_mask

PROFILE_TISSUES: tuple[str, ...] = ("lung", "soft", "fat", "bone")
DEFAULT_BINS = 32
DEFAULT_DISTANCES: tuple[int, ...] = (1, 2, 4)
DIVERSITY_SIZE = 32
# the networks' HU window (ctsgan.data.hu.HU_MIN_DEFAULT / HU_MAX_DEFAULT; not imported: that
# module imports torch, this one stays numpy / scipy)
CLIP_HU: tuple[float, float] = (-1024.0, 600.0)


def _volume(hu: np.ndarray, name: str = "volume") -> np.ndarray:
    arr = np.asarray(hu)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a (z, y, x) volume, got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"{name}: empty volume of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real-valued HU, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"{name}: {bad} NaN / infinite HU values")
    return arr


def _volumes(vols: Iterable[np.ndarray], name: str) -> list[np.ndarray]:
    out = [_volume(v, f"{name}[{i}]") for i, v in enumerate(vols)]
    if not out:
        raise ValueError(f"{name}: no volumes given")
    return out


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Weights that resample n_in equal cells of [0, 1] onto n_out equal cells by area.

    Input cell k covers [k/n_in, (k+1)/n_in); output cell b covers [b/n_out, (b+1)/n_out) and
    gets the average of the piecewise-constant input over it. Shrinking averages whole and
    partial cells; growing repeats values (n_in=2, n_out=4: rows [1,0],[1,0],[0,1],[0,1]).

    Args:
        n_in, n_out: numbers of cells (>= 1).

    Returns:
        (n_out, n_in) float64, rows sum to 1.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"need n_in >= 1 and n_out >= 1, got {n_in}, {n_out}")
    edges_in = np.arange(n_in + 1) / n_in
    edges_out = np.arange(n_out + 1) / n_out
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) * n_out


def resample_area(arr: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Area-weighted resampling of an n-D array to ``shape`` (see :func:`area_weights`), float64.

    Args:
        arr: array of any shape (A1, ..., An).
        shape: target (B1, ..., Bn), same length.

    Returns:
        (B1, ..., Bn) float64.
    """
    out = np.asarray(arr, dtype=np.float64)
    if len(shape) != out.ndim:
        raise ValueError(f"target shape {tuple(shape)} has {len(shape)} axes, the array {out.ndim}")
    for axis, n_out in enumerate(shape):
        if out.shape[axis] != n_out:
            w = area_weights(out.shape[axis], int(n_out))
            out = np.moveaxis(np.tensordot(w, out, axes=([1], [axis])), 0, axis)
    return out


def slice_tissue_fractions(hu: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per axial slice, the fraction of the slice's body voxels in each tissue range.

    Ranges: ``TISSUE_RANGES[t] = [lo, hi)`` (soft and fat overlap on [-100, -50): such a voxel
    counts in both). A slice without body voxels has all fractions 0.

    Args:
        hu: (D, H, W) HU.
        mask: bool (D, H, W) body mask; default :func:`ctsgan.data.realism.body_mask` of ``hu``
            (lungs inside the chest wall count as body, air and table outside do not).

    Returns:
        (4, D) float64, rows :data:`PROFILE_TISSUES` (lung, soft, fat, bone).
    """
    vol = _volume(hu)
    m = body_mask(vol) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != vol.shape:
        raise ValueError(f"mask shape {m.shape} differs from the volume's {vol.shape}")
    out = np.zeros((len(PROFILE_TISSUES), vol.shape[0]), dtype=np.float64)
    for z in range(vol.shape[0]):
        s = np.asarray(vol[z], dtype=np.float32)[m[z]]
        if s.size == 0:
            continue
        for t, name in enumerate(PROFILE_TISSUES):
            lo, hi = TISSUE_RANGES[name]
            sel = s >= lo if hi is None else (s >= lo) & (s < hi)
            out[t, z] = sel.mean()
    return out


def z_profiles(hu: np.ndarray, bins: int = DEFAULT_BINS, mask: np.ndarray | None = None) -> np.ndarray:
    """Body tissue fractions along relative z (0 = first slice, 1 = last), in ``bins`` bins.

    Slice k of D covers [k/D, (k+1)/D) of relative z; bin b covers [b/bins, (b+1)/bins) and
    holds the area-weighted mean of the slice fractions (:func:`slice_tissue_fractions`) over it
    (:func:`area_weights`), so volumes of any depth give comparable curves.

    Args:
        hu: (D, H, W) HU.
        bins: number of relative-z bins (>= 1).
        mask: bool (D, H, W) body mask (default: computed).

    Returns:
        (4, bins) float64 in [0, 1], rows :data:`PROFILE_TISSUES`.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    per_slice = slice_tissue_fractions(hu, mask)
    return per_slice @ area_weights(per_slice.shape[1], bins).T


def mean_z_profile(vols: Iterable[np.ndarray], bins: int = DEFAULT_BINS) -> np.ndarray:
    """Mean of :func:`z_profiles` over volumes: (4, bins)."""
    return np.mean([z_profiles(v, bins) for v in _volumes(vols, "vols")], axis=0)


def profile_error_from_curves(real: np.ndarray, fake: np.ndarray) -> tuple[float, np.ndarray]:
    """z-profile error of two mean curves; the definition of :func:`z_profile_error`.

    Args:
        real: (T, bins) mean real curves R; fake: (T, bins) mean generated curves G.

    Returns:
        (error over all tissues, (T,) per-tissue errors ``sum_b |G - R| / sum_b |R - mean_b R|``).
        NaN where the real curve is flat (nothing to compare against).
    """
    r = np.asarray(real, dtype=np.float64)
    g = np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or r.shape != g.shape:
        raise ValueError(f"expected two (tissues, bins) curves of one shape, got {r.shape} and {g.shape}")
    num = np.abs(g - r).sum(axis=1)
    den = np.abs(r - r.mean(axis=1, keepdims=True)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    total = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
    return total, per


def profile_layout_error(real: np.ndarray, fake: np.ndarray) -> float:
    """The z-profile error with each tissue's overall level taken out: layout alone.

    ``sum |(G - mean_z G) - (R - mean_z R)| / sum |R - mean_z R|``. A generator with the right
    head-to-feet layout but, say, too little fat everywhere scores high on
    :func:`profile_error_from_curves` and low here; a repeated slice scores 1 on both. A
    diagnostic beside the z-profile error, not a replacement for it.

    Args:
        real: (T, bins) mean real curves R; fake: (T, bins) mean generated curves G.
    """
    r = np.asarray(real, dtype=np.float64)
    g = np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or r.shape != g.shape:
        raise ValueError(f"expected two (tissues, bins) curves of one shape, got {r.shape} and {g.shape}")
    rc = r - r.mean(axis=1, keepdims=True)
    gc = g - g.mean(axis=1, keepdims=True)
    den = float(np.abs(rc).sum())
    return float(np.abs(gc - rc).sum() / den) if den > 0 else float("nan")


def profile_orientation(real: np.ndarray, fake: np.ndarray) -> float:
    """Whether the generated layout is the same way up as the real one.

    With A(C) = (C - C flipped along z) / 2, the head/feet-antisymmetric part of curves C:
    ``sum A(G) * A(R) / sum A(R) * A(R)``.

    Args:
        real: (T, bins) mean real curves R; fake: (T, bins) mean generated curves G.

    Returns:
        1 for G = R, -1 for G = R upside down, 0 for a symmetric G (flat, repeated slice); NaN
        when R is symmetric.
    """
    r = np.asarray(real, dtype=np.float64)
    g = np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or r.shape != g.shape:
        raise ValueError(f"expected two (tissues, bins) curves of one shape, got {r.shape} and {g.shape}")
    ar = (r - r[:, ::-1]) / 2
    ag = (g - g[:, ::-1]) / 2
    den = float((ar * ar).sum())
    return float((ag * ar).sum() / den) if den > 0 else float("nan")


def z_profile_error(real_vols: Iterable[np.ndarray], fake_vols: Iterable[np.ndarray], bins: int = DEFAULT_BINS) -> float:
    """How far the generated head-to-feet tissue layout is from the real one.

    ``sum |G - R| / sum |R - mean_z(R)|`` (sums over the 4 tissues and the bins) with R, G the
    mean :func:`z_profiles` of the real and generated volumes. 0: the real layout; 1: as far as
    a flat line at each tissue's real mean level; > 1: worse than flat.

    Args:
        real_vols, fake_vols: (D, H, W) HU volumes (depths may differ).
        bins: relative-z bins.

    Returns:
        the error (NaN when the real curves are all flat).
    """
    return profile_error_from_curves(mean_z_profile(real_vols, bins), mean_z_profile(fake_vols, bins))[0]


def _stack_profiles(profiles: Sequence[np.ndarray], name: str) -> np.ndarray:
    """``profiles`` as one (N, T, bins) array; a clear error for none or mixed shapes."""
    shapes = {np.shape(c) for c in profiles}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"expected one or more (tissues, bins) {name} curves of one shape, got shapes {sorted(shapes)}")
    return np.stack([np.asarray(c, dtype=np.float64) for c in profiles])


def _resampled_errors(real: np.ndarray, pool: np.ndarray, n: int, draws: int, seed: int) -> np.ndarray:
    """z-profile errors against the mean curves ``real`` of ``draws`` sets of ``n`` curves drawn
    with replacement from ``pool`` (N, T, bins), each curve equally likely."""
    counts = np.random.default_rng(seed).multinomial(n, np.full(len(pool), 1.0 / len(pool)), size=draws)
    return np.array([profile_error_from_curves(real, np.tensordot(c / n, pool, axes=1))[0] for c in counts])


def _check_quantile(q: float, name: str) -> None:
    if not 0 < q < 1:
        raise ValueError(f"{name} must be in (0, 1), got {q}")


def z_profile_sampling_floor(
    real_profiles: Sequence[np.ndarray], n: int, draws: int = 2000, seed: int = 0, quantile: float = 0.9
) -> dict[str, float]:
    """The z-profile error a perfect generator scores with a set of ``n`` volumes.

    A generator that draws each volume as an exact copy of a real volume, every real volume equally
    likely, is the real distribution; yet a set of ``n`` of its volumes holds the real volumes in
    a multinomial mix, not in equal shares, and its mean curve misses the real one by that mix
    alone. ``draws`` such sets are scored with :func:`profile_error_from_curves` against the mean
    of ``real_profiles``. A generated set's error near this floor is as close as ``n`` volumes can
    show; with few real volumes of different layouts the floor is large (five chests, n = 32:
    about 0.1), and it falls as 1 / sqrt(n).

    Args:
        real_profiles: each real volume's (T, bins) :func:`z_profiles` (at least one).
        n: generated set size (>= 1).
        draws: sets drawn (>= 1).
        seed: the draws' generator seed.
        quantile: the upper quantile also reported, in (0, 1).

    Returns:
        ``mean``, ``median`` and ``upper`` (the ``quantile`` quantile) of the floor; NaN when the
        real curves are all flat.
    """
    p = _stack_profiles(real_profiles, "real")
    if n < 1 or draws < 1:
        raise ValueError(f"n and draws must be >= 1, got n={n}, draws={draws}")
    _check_quantile(quantile, "quantile")
    errs = _resampled_errors(p.mean(axis=0), p, n, draws, seed)
    return {"mean": float(errs.mean()), "median": float(np.median(errs)), "upper": float(np.quantile(errs, quantile))}


def z_profile_bootstrap(
    real_profiles: Sequence[np.ndarray], fake_profiles: Sequence[np.ndarray], draws: int = 1000, seed: int = 0,
    interval: float = 0.9,
) -> dict[str, float]:
    """How much a generated set's z-profile error would move with another set from the same generator.

    The percentile bootstrap (Efron): ``draws`` sets of ``len(fake_profiles)`` volumes drawn with
    replacement from the generated ones, each scored against the mean of ``real_profiles``. Whether
    an error of 0.29 meets a target of 0.3 is a question this interval answers and one number
    does not. The real curves are held fixed (with five real scans there is nothing to resample
    them from); :func:`z_profile_sampling_floor` is the other half of the noise.

    Args:
        real_profiles, fake_profiles: each volume's (T, bins) :func:`z_profiles` (at least one each,
            one shape).
        draws: bootstrap sets (>= 2).
        seed: the draws' generator seed.
        interval: central coverage of the reported interval, in (0, 1).

    Returns:
        ``error`` (the set's own z-profile error), ``mean`` and ``sd`` of the bootstrap errors, and
        ``low`` / ``high``, the ``interval`` percentile interval.
    """
    r = _stack_profiles(real_profiles, "real")
    g = _stack_profiles(fake_profiles, "generated")
    if r.shape[1:] != g.shape[1:]:
        raise ValueError(f"real and generated curves differ in shape: {r.shape[1:]} vs {g.shape[1:]}")
    if draws < 2:
        raise ValueError(f"draws must be >= 2, got {draws}")
    _check_quantile(interval, "interval")
    real = r.mean(axis=0)
    errs = _resampled_errors(real, g, len(g), draws, seed)
    tail = (1.0 - interval) / 2
    return {"error": profile_error_from_curves(real, g.mean(axis=0))[0], "mean": float(errs.mean()),
            "sd": float(errs.std(ddof=1)), "low": float(np.quantile(errs, tail)),
            "high": float(np.quantile(errs, 1.0 - tail))}


def z_variation(
    vol: np.ndarray, distances: Sequence[int] = DEFAULT_DISTANCES, mask: np.ndarray | None = None
) -> np.ndarray:
    """Mean slice-to-slice change in HU inside the body, for each slice distance d.

    For each d: mean of |v[k] - v[k + d]| over all k and over the voxels in the body mask
    (:func:`ctsgan.data.realism.body_mask`) of slice k or of slice k + d; HU clipped to
    :data:`CLIP_HU` first. A volume without any body voxel uses all voxels.

    Args:
        vol: (D, H, W) HU, D > max(distances).
        distances: slice distances (each >= 1).
        mask: bool (D, H, W) body mask (default: computed).

    Returns:
        (len(distances),) float64 HU.
    """
    v = _volume(vol)
    dists = [int(d) for d in distances]
    if not dists or min(dists) < 1:
        raise ValueError(f"distances must be >= 1 (and at least one), got {list(distances)}")
    if max(dists) >= v.shape[0]:
        raise ValueError(f"distance {max(dists)} needs more than {v.shape[0]} slices")
    c = np.clip(np.asarray(v, dtype=np.float32), *CLIP_HU)
    mask = body_mask(c) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != c.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the volume's {c.shape}")
    out = []
    for d in dists:
        diff = np.abs(c[d:] - c[:-d])
        union = mask[d:] | mask[:-d]
        n = int(union.sum())
        out.append(float(diff[union].astype(np.float64).sum() / n) if n else float(diff.astype(np.float64).mean()))
    return np.asarray(out, dtype=np.float64)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def z_variation_ratio(
    real_vols: Iterable[np.ndarray], fake_vols: Iterable[np.ndarray], distances: Sequence[int] = DEFAULT_DISTANCES
) -> tuple[float, dict[int, float]]:
    """Generated / real :func:`z_variation` (each the mean over its set's volumes).

    Args:
        real_vols, fake_vols: (D, H, W) HU volumes of the same z spacing.
        distances: slice distances.

    Returns:
        (mean of the per-d ratios, {d: ratio}); NaN where the real variation is 0.
    """
    r = np.mean([z_variation(v, distances) for v in _volumes(real_vols, "real_vols")], axis=0)
    f = np.mean([z_variation(v, distances) for v in _volumes(fake_vols, "fake_vols")], axis=0)
    per = {int(d): _ratio(a, b) for d, a, b in zip(distances, f, r, strict=True)}
    return float(np.mean(list(per.values()))), per


def small_cube(vol: np.ndarray, size: int = DIVERSITY_SIZE) -> np.ndarray:
    """(D, H, W) HU -> (size, size, size) float32 HU, clipped to :data:`CLIP_HU`, area-averaged.

    Every volume maps to the same cube whatever its shape (thinner axes are stretched), so any
    two can be compared voxel by voxel.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    c = np.clip(np.asarray(_volume(vol), dtype=np.float32), *CLIP_HU)
    return resample_area(c, (size, size, size)).astype(np.float32)


MAX_PAIRS = 2000


def mean_pairwise_distance(cubes: Sequence[np.ndarray], max_pairs: int = MAX_PAIRS) -> float:
    """Mean over pairs i < j of mean |cubes[i] - cubes[j]|.

    Args:
        cubes: >= 2 arrays of one shape.
        max_pairs: with more pairs than this (more than 63 cubes at the default), a fixed sample
            of ``max_pairs`` distinct pairs (seed 0) is averaged instead: 10,000 generated volumes
            would otherwise make 5e7 pairs.

    Returns:
        the mean distance (same units as the cubes).
    """
    n = len(cubes)
    if n < 2:
        raise ValueError(f"need at least 2 volumes for a pairwise distance, got {n}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    shapes = {np.shape(c) for c in cubes}
    if len(shapes) != 1:
        raise ValueError(f"cubes must share one shape, got {sorted(shapes)}")
    ii, jj = np.triu_indices(n, k=1)
    if len(ii) > max_pairs:
        pick = np.sort(np.random.default_rng(0).choice(len(ii), size=max_pairs, replace=False))
        ii, jj = ii[pick], jj[pick]
    d = [np.abs(np.asarray(cubes[int(i)], dtype=np.float64) - np.asarray(cubes[int(j)], dtype=np.float64)).mean()
         for i, j in zip(ii, jj, strict=True)]
    return float(np.mean(d))


def diversity(vols: Iterable[np.ndarray], size: int = DIVERSITY_SIZE) -> float:
    """Mean pairwise mean-absolute HU difference between volumes (each :func:`small_cube`).

    Args:
        vols: >= 2 (D, H, W) HU volumes (shapes may differ).
        size: cube edge they are resampled to (area average; 32 keeps it cheap).

    Returns:
        HU (0 when all volumes are equal).
    """
    return mean_pairwise_distance([small_cube(v, size) for v in _volumes(vols, "vols")])


def diversity_ratio(real_vols: Iterable[np.ndarray], fake_vols: Iterable[np.ndarray], size: int = DIVERSITY_SIZE) -> float:
    """Generated / real :func:`diversity` (NaN when the real volumes are all equal)."""
    return _ratio(diversity(fake_vols, size), diversity(real_vols, size))


def nearest_cube_distances(cubes: Sequence[np.ndarray], reference: Sequence[np.ndarray], *, exclude_self: bool = False) -> np.ndarray:
    """Each cube's mean absolute difference to its nearest reference cube.

    Args:
        cubes: (M) arrays of one shape (e.g. :func:`small_cube` HU cubes).
        reference: (T) arrays of that shape.
        exclude_self: ``cubes`` *is* ``reference``: cube i skips reference i (leave one out;
            needs T >= 2).

    Returns:
        (M,) float64 distances, in the cubes' units.
    """
    if not len(reference) or (exclude_self and len(reference) < 2):
        raise ValueError(f"need {'2' if exclude_self else '1'} or more reference cubes, got {len(reference)}")
    if exclude_self and len(cubes) != len(reference):
        raise ValueError(f"exclude_self: cubes ({len(cubes)}) must be the reference ({len(reference)})")
    ref = [np.asarray(r, dtype=np.float64) for r in reference]
    out = np.empty(len(cubes))
    for i, c in enumerate(cubes):
        c64 = np.asarray(c, dtype=np.float64)
        out[i] = min(float(np.abs(c64 - r).mean()) for j, r in enumerate(ref) if not (exclude_self and j == i))
    return out


#: in-plane transforms the aligned copy check tries on each training volume: scale 0.75-1.25 per
#: axis in steps of 0.05, rotation -10 to 10 degrees in steps of 5 (605 per volume)
ALIGN_SCALES: tuple[float, ...] = tuple(round(0.75 + 0.05 * i, 2) for i in range(11))
ALIGN_ANGLES: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)


def align_grid(scales: Sequence[float] = ALIGN_SCALES, angles: Sequence[float] = ALIGN_ANGLES) -> np.ndarray:
    """Every (scale_y, scale_x, angle) combination as rows of a (K, 3) array."""
    return np.array([(sy, sx, a) for sy in scales for sx in scales for a in angles], dtype=np.float64)


ALIGN_MAX_EDGE = 2 * DIVERSITY_SIZE


def _alignment_copy(vol: np.ndarray) -> np.ndarray:
    """float32 copy of a volume for the aligned check, area-reduced to at most
    :data:`ALIGN_MAX_EDGE` per axis first (the comparison happens on :func:`small_cube` cubes of
    half that edge anyway; transforming a 224^3 volume 605 times would cost ~40x more)."""
    v = np.asarray(_volume(vol), dtype=np.float32)
    shape = tuple(min(n, ALIGN_MAX_EDGE) for n in v.shape)
    return np.ascontiguousarray(v if shape == v.shape else resample_area(v, shape), dtype=np.float32)


def aligned_nearest_distances(
    cubes: Sequence[np.ndarray], volumes: Sequence[np.ndarray], grid: np.ndarray | None = None, chunk: int = 64
) -> tuple[np.ndarray, list[tuple[int, float, float, float]]]:
    """Each cube's distance to the nearest training volume *after* in-plane scaling / rotation.

    :func:`nearest_cube_distances` compares voxel by voxel, so a training scan stretched by 10 %
    is as far away as another patient. Here every training volume is first transformed by each
    row of ``grid`` (:func:`ctsgan.data.inplane_affine.affine_inplane`, air outside; volumes over
    :data:`ALIGN_MAX_EDGE` voxels per axis are area-reduced to it first), then reduced with
    :func:`small_cube`; a cube's distance is the smallest mean absolute HU difference to any
    of them. A generated volume much closer to a transformed scan than to the scan itself is a
    stretched copy.

    Args:
        cubes: (M) :func:`small_cube` cubes (e.g. of generated volumes).
        volumes: (T) training volumes (D, H, W) in HU.
        grid: (K, 3) (scale_y, scale_x, angle in degrees) rows; default :func:`align_grid`.
        chunk: transforms computed at once (memory: chunk x one volume in float32).

    Returns:
        (M,) distances in HU, and for each cube its best match (training index, scale_y, scale_x, angle).
    """
    import torch

    from ctsgan.data.inplane_affine import affine_inplane

    if not len(volumes):
        raise ValueError("need 1 or more training volumes")
    grid = align_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    c64 = [np.asarray(c, dtype=np.float64) for c in cubes]
    best = np.full(len(c64), np.inf)
    where: list[tuple[int, float, float, float]] = [(-1, 1.0, 1.0, 0.0)] * len(c64)
    for t, vol in enumerate(volumes):
        v = torch.from_numpy(_alignment_copy(vol))[None]  # (1, D, H, W): slices as channels
        for start in range(0, len(grid), chunk):
            part = grid[start : start + chunk]
            moved = affine_inplane(v.expand(len(part), -1, -1, -1), part, fill=CLIP_HU[0]).numpy()
            for k, m in enumerate(moved):
                ref = small_cube(m).astype(np.float64)
                for i, c in enumerate(c64):
                    d = float(np.abs(c - ref).mean())
                    if d < best[i]:
                        best[i], where[i] = d, (t, *(float(x) for x in part[k]))  # type: ignore[assignment]
    return best, where


def copy_distances(real: Sequence[VolumeStructure], fake: Sequence[VolumeStructure]) -> dict[str, float]:
    """How close generated volumes come to a training volume, beside how close training volumes
    come to each other (mean absolute HU difference of the summaries' cubes).

    Returns:
        ``nearest_train_hu``: the smallest distance from a generated volume to a training volume;
        ``train_nearest_other_hu``: the smallest distance between two training volumes;
        ``copy_ratio``: their quotient (< 1: a generated volume is closer to a training volume
        than any two training volumes are to each other; falling during training = memorising);
        ``closer_than_train_pair``: how many generated volumes are (what ``generate --guard``
        rejects, :mod:`ctsgan.generation.guard`).
        Empty when there are fewer than 2 training volumes or no generated one.
    """
    if len(real) < 2 or not fake:
        return {}
    real_cubes = [s.cube for s in real]
    near = nearest_cube_distances([s.cube for s in fake], real_cubes)
    gen = float(near.min())
    other = float(nearest_cube_distances(real_cubes, real_cubes, exclude_self=True).min())
    ratio = _finite(_ratio(gen, other))
    out: dict[str, float] = {"nearest_train_hu": gen, "train_nearest_other_hu": other,
                             "closer_than_train_pair": int((near < other).sum())}
    return out if ratio is None else {**out, "copy_ratio": ratio}


@dataclass
class VolumeStructure:
    """What the structure metrics need of one volume.

    Attributes:
        profile: (4, bins) :func:`z_profiles`.
        z_variation: (len(distances),) :func:`z_variation` in HU.
        cube: (size, size, size) float32 :func:`small_cube`.
        distances: the slice distances of ``z_variation``.
    """

    profile: np.ndarray
    z_variation: np.ndarray
    cube: np.ndarray
    distances: tuple[int, ...]


def volume_structure(
    vol: np.ndarray, bins: int = DEFAULT_BINS, distances: Sequence[int] = DEFAULT_DISTANCES, size: int = DIVERSITY_SIZE
) -> VolumeStructure:
    """Summary of one (D, H, W) HU volume for :func:`structure_metrics_from_summaries`."""
    mask = body_mask(_volume(vol))  # one mask for both (clipping to CLIP_HU does not move -500 HU)
    return VolumeStructure(
        z_profiles(vol, bins, mask), z_variation(vol, distances, mask), small_cube(vol, size), tuple(int(d) for d in distances)
    )


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def structure_metrics_from_summaries(real: Sequence[VolumeStructure], fake: Sequence[VolumeStructure]) -> dict[str, Any]:
    """:func:`structure_metrics` from per-volume :class:`VolumeStructure` summaries.

    Args:
        real, fake: summaries made with the same bins, distances and cube size.

    Returns:
        see :func:`structure_metrics`.
    """
    if not real or not fake:
        raise ValueError(f"need at least one real and one generated volume, got {len(real)} and {len(fake)}")
    dists = real[0].distances
    kinds = {(s.profile.shape, s.distances, s.cube.shape) for s in [*real, *fake]}
    if len(kinds) != 1:
        raise ValueError(f"summaries made with different bins / distances / cube sizes: {sorted(map(str, kinds))}")
    r_curve = np.mean([s.profile for s in real], axis=0)
    f_curve = np.mean([s.profile for s in fake], axis=0)
    err, err_per = profile_error_from_curves(r_curve, f_curve)
    orientation = profile_orientation(r_curve, f_curve)
    r_var = np.mean([s.z_variation for s in real], axis=0)
    f_var = np.mean([s.z_variation for s in fake], axis=0)
    var_per = {str(d): _finite(_ratio(f, r)) for d, f, r in zip(dists, f_var, r_var, strict=True)}
    var_ok = [v for v in var_per.values() if v is not None]
    out: dict[str, Any] = {
        "z_profile_error": _finite(err),
        "z_profile_error_per_tissue": {t: _finite(e) for t, e in zip(PROFILE_TISSUES, err_per, strict=True)},
        "z_profile_reason": None if np.isfinite(err) else "the real z-profiles are flat",
        "z_profile_orientation": _finite(orientation),
        "z_profile_layout_error": _finite(profile_layout_error(r_curve, f_curve)),
        "z_variation_ratio": float(np.mean(var_ok)) if len(var_ok) == len(var_per) else None,
        "z_variation_ratio_per_d": var_per,
        "z_variation_real_hu": {str(d): float(v) for d, v in zip(dists, r_var, strict=True)},
        "z_variation_fake_hu": {str(d): float(v) for d, v in zip(dists, f_var, strict=True)},
        "z_variation_reason": None if len(var_ok) == len(var_per) else "the real volumes do not change along z",
        "diversity_ratio": None,
        "diversity_real_hu": None,
        "diversity_fake_hu": None,
        "diversity_reason": None,
        "n_real": len(real),
        "n_fake": len(fake),
    }
    if len(real) < 2 or len(fake) < 2:
        out["diversity_reason"] = f"needs >= 2 volumes in each set (real {len(real)}, generated {len(fake)})"
        return out
    d_real = mean_pairwise_distance([s.cube for s in real])
    d_fake = mean_pairwise_distance([s.cube for s in fake])
    out.update(diversity_real_hu=d_real, diversity_fake_hu=d_fake, diversity_ratio=_finite(_ratio(d_fake, d_real)))
    if out["diversity_ratio"] is None:
        out["diversity_reason"] = "the real volumes are all equal"
    return out


def structure_metrics(
    real_vols: Iterable[np.ndarray],
    fake_vols: Iterable[np.ndarray],
    *,
    bins: int = DEFAULT_BINS,
    distances: Sequence[int] = DEFAULT_DISTANCES,
    size: int = DIVERSITY_SIZE,
) -> dict[str, Any]:
    """All structure metrics of a generated set against a real set.

    Args:
        real_vols, fake_vols: (D, H, W) HU volumes (lists of arrays, memory-mapped int16 or float;
            read one at a time). Same z spacing for the z-variation.
        bins: relative-z bins of the z-profiles.
        distances: slice distances of the z-variation.
        size: cube edge for the diversity.

    Returns:
        ``z_profile_error`` (0 = real layout, 1 = flat), ``z_profile_error_per_tissue``,
        ``z_profile_orientation`` (1 = same way up as real, -1 = upside down, 0 = symmetric),
        ``z_variation_ratio`` (1 = real, 0 = constant along z), ``z_variation_ratio_per_d``
        ({"1": .., "2": .., "4": ..}), ``z_variation_real_hu`` / ``_fake_hu`` (per d),
        ``diversity_ratio`` (1 = real, 0 = all the same), ``diversity_real_hu`` / ``_fake_hu``,
        ``n_real``, ``n_fake`` and a ``*_reason`` per metric (None, or why the value is None:
        diversity needs >= 2 volumes per set; a flat / constant real set gives no ratio).
    """
    real = [volume_structure(v, bins, distances, size) for v in _volumes(real_vols, "real_vols")]
    fake = [volume_structure(v, bins, distances, size) for v in _volumes(fake_vols, "fake_vols")]
    return structure_metrics_from_summaries(real, fake)


def z_profile_curves(
    real_vols: Iterable[np.ndarray], fake_sets: dict[str, Iterable[np.ndarray]], bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """Mean z-profile curves for a figure (``ctsgan.viz.figures.figure_z_profiles``).

    Args:
        real_vols: (D, H, W) HU real volumes.
        fake_sets: set name -> its (D, H, W) HU volumes.
        bins: relative-z bins.

    Returns:
        ``{"tissues": [4 names], "z": (bins,) bin centres in relative z, "real": (4, bins),
        "fakes": {name: (4, bins)}}`` (lists, JSON-ready).
    """
    return {
        "tissues": list(PROFILE_TISSUES),
        "z": profile_bin_centres(bins).tolist(),
        "real": mean_z_profile(real_vols, bins).tolist(),
        "fakes": {name: mean_z_profile(v, bins).tolist() for name, v in fake_sets.items()},
    }


def profile_bin_centres(bins: int = DEFAULT_BINS) -> np.ndarray:
    """(bins,) centres of the relative-z bins: (b + 0.5) / bins."""
    return (np.arange(bins) + 0.5) / bins


# below / above these a generated set is plainly broken (the known cases in docs/evaluation.md sit
# far beyond them: repeated slice z-variation 0.00, shuffled slices 3.15, copies diversity 0.00,
# flat or flipped profile ~0.9-1, against real-vs-real 0.1-0.2 / ~1 / 0.7-1.4 on phantoms)
WARN_Z_VARIATION_LOW = 0.25
WARN_Z_VARIATION_HIGH = 2.0
WARN_DIVERSITY = 0.25
WARN_PROFILE = 0.75


def structure_warnings(metrics: dict[str, Any], reference: dict[str, Any] | None = None) -> list[str]:
    """Plain-words warnings for a generated set's structure metrics (empty when none apply).

    Args:
        metrics: a :func:`structure_metrics` dict (values may be None).
        reference: the same for real vs real (``real_real_structure`` of ``evaluate``), or None.
            With few real volumes their own z-profile error is high (3 vs 3 real chests: up to
            0.78), so the profile warning fires only above max(0.75, 2 x the real one).

    Returns:
        one sentence per problem.
    """
    out = []
    zv, dv, pe = metrics.get("z_variation_ratio"), metrics.get("diversity_ratio"), metrics.get("z_profile_error")
    ref_pe = (reference or {}).get("z_profile_error")
    pe_limit = max(WARN_PROFILE, 2 * ref_pe) if ref_pe is not None else WARN_PROFILE
    if zv is not None and zv < WARN_Z_VARIATION_LOW:
        out.append(f"slices barely change along z (z-variation ratio {zv:.2f}; real = 1): one axial slice repeated?")
    if zv is not None and zv > WARN_Z_VARIATION_HIGH:
        out.append(f"neighbouring slices differ far more than in real scans (z-variation ratio {zv:.2f}; real = 1)")
    if dv is not None and dv < WARN_DIVERSITY:
        out.append(f"volumes barely differ from seed to seed (diversity ratio {dv:.2f}; real = 1): mode collapse?")
    if pe is not None and pe > pe_limit:
        out.append(f"head-to-feet tissue layout is about as wrong as a flat line or worse (z-profile error {pe:.2f}; "
                   f"real ~0, warning above {pe_limit:.2f})")
    return out
