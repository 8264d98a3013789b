"""The figures of ``ctsgan evaluate``: which plots of :mod:`ctsgan.viz.figures` it draws from an
evaluation's sets, features and results (metrics sit above viz: viz never imports metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ctsgan.metrics.features import SetFeatures
from ctsgan.metrics.volume_sets import VolumeSet
from ctsgan.viz.figures import figure_grid, figure_memorization, figure_planes, figure_z_profiles, slug


def write_evaluation_figures(
    out_dir: Path,
    real_set: VolumeSet,
    real_f: SetFeatures,
    fake_sets: Mapping[str, VolumeSet],
    fake_features: Mapping[str, SetFeatures],
    shape: tuple[int, int, int],
    result: Mapping[str, Any],
) -> list[Path]:
    """All evaluation figures into ``out_dir``; returns the written paths."""
    written: list[Path] = []

    def first_volume(volset: VolumeSet, feats: SetFeatures) -> np.ndarray:
        index = volset.names.index(feats.volumes[0])
        return volset.load(index, shape)

    rows = [("real", first_volume(real_set, real_f))]
    rows += [(name, first_volume(fake_sets[name], f)) for name, f in fake_features.items()]
    written.append(figure_planes(out_dir / "real_vs_generated.png", rows, positions=(0.35, 0.5, 0.65)))
    written.append(figure_grid(out_dir / "grid_real.png", real_f.middle, real_f.volumes, "real"))
    for name, f in fake_features.items():
        written.append(figure_grid(out_dir / f"grid_{slug(name)}.png", f.middle, f.volumes, name))
        mem = result["fakes"][name].get("memorization")
        if mem:
            written.append(figure_memorization(out_dir / f"memorization_{slug(name)}.png", mem, name))
    real_curve = result.get("real", {}).get("z_profile_mean")
    fake_curves = {n: e["z_profile_mean"] for n, e in result.get("fakes", {}).items() if e.get("z_profile_mean")}
    if real_curve and fake_curves:
        tissues = result.get("settings", {}).get("structure", {}).get("tissues", ("lung", "soft", "fat", "bone"))
        errors = {n: result["fakes"][n].get("z_profile_error") for n in fake_curves}
        written.append(figure_z_profiles(out_dir / "z_profiles.png", real_curve, fake_curves, tissues, errors))
    return written
