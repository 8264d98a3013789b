"""``evaluate``: FID / IS as the paper computes them, 2.5D FID, memorization, 3D structure, report and figures.

Outputs in ``out``:

- ``metrics.json``: top level ``real_real_fid_slice_mean`` / ``_std`` (FID between two disjoint
  halves of the real set, or real vs ``real_ref``), the real set's IS, and per generated set
  ``fid_slice_mean``, ``fid_slice_std``, ``fid_2p5d`` (+ per plane), ``is_mean``, ``is_std``
  (null with ``is_reason`` when no logits model is loaded), the memorization check and the
  structure metrics (``z_profile_error``, ``z_variation_ratio``, ``diversity_ratio``, ...; the
  real set's halves against each other in ``real_real_structure``);
- ``table.md``: the paper's Table 1 layout (rows: real data, then each generated set);
- ``figures/`` (``figures=True``): real vs generated in three planes, diversity grids,
  memorization histograms, mean z-profiles;
- ``cache/``: Inception features of the generated volumes, reused by later runs on the same files.

The real sets' features (``--real``, ``--real-ref``, ``--train``) go to a cache folder that
outlives ``out`` (``cache_dir``, default :func:`ctsgan.metrics.features.default_cache_dir`),
keyed by each file's content hash and the feature settings, so a second evaluation against the
same real data, into another ``out``, runs Inception only on the generated volumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT
from ctsgan.metrics.features import FeatureCache, SetFeatures, compute_set_features, default_cache_dir
from ctsgan.metrics.inception import INPUT_SIZE, InceptionFeatures, SliceChannels
from ctsgan.metrics.memorization import FEATURE_RATIO, SSIM_THRESHOLD
from ctsgan.metrics.registry import (
    DEFAULT_METRICS,
    METRICS,
    EvalContext,
    check_metric_names,
    is_entry,
    mean_std,
    slice_fid_pairs,
    structure_entry,
)
from ctsgan.metrics.report import write_metrics_json, write_table
from ctsgan.metrics.structure import (
    CLIP_HU,
    DEFAULT_BINS,
    DEFAULT_DISTANCES,
    DIVERSITY_SIZE,
    PROFILE_TISSUES,
)
from ctsgan.metrics.volume_sets import VolumeSet, open_volume_set, split_spec

log = logging.getLogger(__name__)


def default_train_spec(real: VolumeSet) -> str:
    """The training set for the memorization check when none is given.

    A prepared dataset's ``train`` split (when it has one), else the real set itself.
    """
    if real.split != "train" and (real.root / "manifest.csv").exists():
        if len(PreparedDataset(real.root, "train")):
            return f"{real.root}:train"
    return real.spec


def _target_shape(volset: VolumeSet) -> tuple[int, int, int]:
    errors = []
    for i in range(len(volset)):
        try:
            return volset.shape_of(i)
        except (OSError, ValueError) as e:
            errors.append(f"{volset.paths[i]}: {e}")
    raise ValueError(f"{volset.spec}: no readable volume: " + "; ".join(errors))


def real_real_fid(a: SetFeatures, b: SetFeatures | None, pairs: int | None) -> dict[str, Any]:
    """Reference row: slice FID between disjoint real volumes.

    With ``b`` None the real set is cut in two halves (first half vs second half, set order);
    otherwise ``a`` is paired with ``b``. Pair k: (first[k], second[k]).
    """
    if b is None:
        half = len(a.axial) // 2
        first, second = a.axial[:half], a.axial[half : 2 * half]
        names1, names2 = a.volumes[:half], a.volumes[half : 2 * half]
    else:
        n = min(len(a.axial), len(b.axial))
        first, second, names1, names2 = a.axial[:n], b.axial[:n], a.volumes[:n], b.volumes[:n]
    if not first:
        return {
            "real_real_fid_slice_mean": None,
            "real_real_fid_slice_std": None,
            "real_real_reason": "needs at least 2 real volumes (or --real-ref)",
        }
    res = slice_fid_pairs(first, second, pairs)
    mean, std = mean_std([v for _, _, v in res])
    return {
        "real_real_fid_slice_mean": mean,
        "real_real_fid_slice_std": std,
        "real_real_pairs": [{"real_a": names1[i], "real_b": names2[j], "fid": v} for i, j, v in res],
    }


def real_real_structure(a: SetFeatures, b: SetFeatures | None = None) -> dict[str, Any]:
    """Reference row of the structure metrics, as :func:`real_real_fid`: the first half of the
    real set against its second half, or ``a`` against ``b`` (``--real-ref``).

    Returns:
        ``{"real_real_structure": ...}``: the structure metrics of the two (as for a generated
        set, without the curve), or None and ``real_real_structure_reason``.
    """
    if b is None:
        half = len(a.structure) // 2
        first, second = a.structure[:half], a.structure[half : 2 * half]
    else:
        first, second = a.structure, b.structure
    if not first or not second:
        return {"real_real_structure": None, "real_real_structure_reason": "needs at least 2 real volumes (or --real-ref)"}
    ref = structure_entry(first, second)
    ref.pop("z_profile_mean", None)
    return {"real_real_structure": ref}


def structure_distances(depth: int) -> tuple[int, ...]:
    """The default z-variation distances (1, 2, 4) that fit ``depth`` slices (empty below 2)."""
    return tuple(d for d in DEFAULT_DISTANCES if d < depth)


def parse_fake_spec(text: str) -> tuple[str, str]:
    """``"name=DIR"`` -> (name, DIR); ``"DIR"`` -> (folder name, DIR)."""
    name, sep, rest = text.partition("=")
    if sep and name and "/" not in name:
        return name, rest
    root, _ = split_spec(text)
    return root.name or str(root), text


def evaluate(
    real: str | Path,
    fakes: Mapping[str, str | Path],
    out: str | Path,
    *,
    pairs: int | None = None,
    figures: bool = False,
    inception: str | Path | None = None,
    is_weights: str | Path | None = None,
    device: str = "cpu",
    metrics: Sequence[str] = DEFAULT_METRICS,
    train: str | Path | None = None,
    real_ref: str | Path | None = None,
    channels: SliceChannels | str = SliceChannels.REPLICATE,
    plane_stride: int = 1,
    mem_slices: int = 16,
    ssim_size: int = 32,
    ssim_threshold: float = SSIM_THRESHOLD,
    feature_ratio: float = FEATURE_RATIO,
    batch_size: int = 32,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate generated volume sets against a real set; write ``metrics.json`` and ``table.md``.

    Args:
        real: real set, ``DIR`` or ``DIR:split`` (prepared dataset) or a folder of volumes.
        fakes: name -> generated set (same forms), e.g. ``{"3D GAN": ..., "CT-SGAN": ...}``.
        out: output folder.
        pairs: number of (real, generated) pairs for the paper FID (default: one per generated
            volume, reals reused in turn); also caps the real/real pairs.
        figures: also write the PNG figures.
        inception: TorchScript FID Inception (default: the bundled ``default_1.pt``).
        is_weights: torch-fidelity Inception weights (logits) for IS; None: IS is null.
        device: torch device for Inception.
        metrics: names from :data:`ctsgan.metrics.registry.METRICS`.
        train: training set for the memorization check (default: see :func:`default_train_spec`).
        real_ref: second real set for the real/real row (default: halves of ``real``).
        channels: ``replicate`` (grey slice in 3 channels) or ``neighbours`` (3 adjacent slices).
        plane_stride: every k-th slice in each plane for the 2.5D FID.
        mem_slices: axial slices (evenly spaced) per volume descriptor for memorization.
        ssim_size: cube edge volumes are downsampled to for SSIM.
        ssim_threshold, feature_ratio: near-copy rule (see :mod:`ctsgan.metrics.memorization`).
        batch_size: slices per Inception forward pass.
        cache: keep per-volume features and reuse them (real sets in ``cache_dir``, generated
            sets in ``out/cache``); False: compute everything, write no cache.
        cache_dir: the real sets' feature cache, shared by all evaluations (default
            :func:`ctsgan.metrics.features.default_cache_dir`: ``$CTSGAN_CACHE_DIR`` or
            ``~/.cache/ctsgan/features``).

    Returns:
        the dict written to ``metrics.json``.
    """
    t_start = time.perf_counter()
    names = check_metric_names(list(metrics))
    channels = SliceChannels(channels)
    if plane_stride < 1:
        raise ValueError(f"plane_stride must be >= 1, got {plane_stride}")
    if pairs is not None and pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    if not fakes:
        raise ValueError("no generated set given (fakes is empty)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    real_set = open_volume_set(real)
    fake_sets = {name: open_volume_set(spec) for name, spec in fakes.items()}
    ref_set = open_volume_set(real_ref) if real_ref is not None else None
    want_mem = "memorization" in names
    train_spec = str(train) if train is not None else default_train_spec(real_set)
    train_is_real = want_mem and train_spec == real_set.spec
    train_set = open_volume_set(train_spec) if want_mem and not train_is_real else None
    shape = _target_shape(real_set)

    extractor = InceptionFeatures(inception, is_weights, device=device, batch_size=batch_size)
    real_root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) if cache else None
    real_cache = FeatureCache(real_root)  # real / real_ref / train: content-keyed, shared by all runs
    fake_cache = FeatureCache(out / "cache" if cache else None)  # generated sets: this run's folder
    stride = plane_stride if "fid_2p5d" in names else None
    need_axial = bool({"fid_slice", "is_slice"} & set(names))
    z_dists = structure_distances(shape[0]) if "structure" in names else ()
    timing: dict[str, float] = {}

    def features(name: str, volset: VolumeSet, feature_cache: FeatureCache, **kw: Any) -> SetFeatures:
        t0 = time.perf_counter()
        kw.setdefault("all_axial", need_axial)
        kw.setdefault("structure_distances", z_dists or None)
        f = compute_set_features(
            name, volset, extractor, shape, feature_cache, channels=channels, progress=progress, **kw
        )
        timing[f"features_{name}"] = round(time.perf_counter() - t0, 3)
        if not f.volumes:
            raise ValueError(f"{volset.spec}: none of its {len(volset)} volumes could be read: {f.skipped[:3]}")
        return f

    mem_kw = {"mem_slices": mem_slices, "ssim_size": ssim_size}
    real_f = features("real", real_set, real_cache, plane_stride=stride, **(mem_kw if train_is_real else {}))
    ref_f = features("real_ref", ref_set, real_cache) if ref_set is not None else None
    train_f = real_f if train_is_real else None
    if train_set is not None:
        train_f = features("train", train_set, real_cache, all_axial=False, keep_middle=False, structure_distances=None, **mem_kw)
    ctx = EvalContext(real_f, train_f, extractor, pairs, ssim_threshold, feature_ratio)

    result: dict[str, Any] = {
        "real": {"spec": real_set.spec, "n_volumes": len(real_f.volumes), "skipped": real_f.skipped},
        "shape": list(shape),
    }
    t0 = time.perf_counter()
    if "fid_slice" in names:
        result.update(real_real_fid(real_f, ref_f, pairs))
    if "is_slice" in names:
        result["real"].update(is_entry(real_f.axial, extractor))
    if "structure" in names and real_f.structure:
        result.update(real_real_structure(real_f, ref_f))
        result["real"]["z_profile_mean"] = np.mean([s.profile for s in real_f.structure], axis=0).tolist()
    timing["real_real"] = round(time.perf_counter() - t0, 3)

    fake_features: dict[str, SetFeatures] = {}
    result["fakes"] = {}
    for name, volset in fake_sets.items():
        f = features(name, volset, fake_cache, plane_stride=stride, **(mem_kw if want_mem else {}))
        fake_features[name] = f
        entry: dict[str, Any] = {
            "spec": volset.spec,
            "n_volumes": len(f.volumes),
            "skipped": f.skipped,
            "resampled_to": list(shape),
        }
        for metric in names:
            t0 = time.perf_counter()
            entry.update(METRICS[metric](ctx, f))
            timing[f"{metric}_{name}"] = round(time.perf_counter() - t0, 3)
        result["fakes"][name] = entry

    result["settings"] = {
        "inception": str(extractor.path),
        "is_weights": str(is_weights) if is_weights is not None else None,
        "slice_convention": (
            f"HU window [{HU_MIN_DEFAULT:g}, {HU_MAX_DEFAULT:g}] -> grey 0..255 (rounded), "
            f"channels={channels.value}, bilinear resize to {INPUT_SIZE}x{INPUT_SIZE}, x/128-1"
        ),
        "slices_per_volume_fid": shape[0],
        "pairs": pairs,
        "plane_stride_2p5d": plane_stride,
        "memorization": {
            "train": train_spec if want_mem else None,
            "n_train": len(train_f.volumes) if train_f is not None else 0,
            "descriptor_slices": mem_slices,
            "ssim_size": ssim_size,
        },
        "structure": {
            "tissues": list(PROFILE_TISSUES),
            "z_profile_bins": DEFAULT_BINS,
            "z_variation_distances": list(z_dists),
            "diversity_size": DIVERSITY_SIZE,
            "clip_hu": list(CLIP_HU),
        },
        "metrics": names,
        "device": str(device),
    }
    if figures:
        t0 = time.perf_counter()
        from ctsgan.metrics.evaluation_figures import write_evaluation_figures

        result["figures"] = [
            str(p) for p in write_evaluation_figures(out / "figures", real_set, real_f, fake_sets, fake_features, shape, result)
        ]
        timing["figures"] = round(time.perf_counter() - t0, 3)
    timing["total"] = round(time.perf_counter() - t_start, 3)
    result["timing_s"] = timing
    result["feature_cache"] = {
        "hits": real_cache.hits + fake_cache.hits,
        "misses": real_cache.misses + fake_cache.misses,
        "real": {"hits": real_cache.hits, "misses": real_cache.misses, "dir": str(real_root) if real_root else None},
        "generated": {"hits": fake_cache.hits, "misses": fake_cache.misses, "dir": str(out / "cache") if cache else None},
    }
    write_metrics_json(out / "metrics.json", result)
    write_table(out / "table.md", result)
    return result
