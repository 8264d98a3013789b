"""Evaluation figures (matplotlib PNGs, no pyplot state).

- :func:`figure_planes`: real vs generated volumes in axial, coronal and sagittal planes at the
  same relative positions (the paper's Figure 1);
- :func:`figure_grid`: many generated middle axial slices, to judge diversity;
- :func:`figure_memorization`: nearest-training-volume distances of generated volumes against
  real-vs-real nearest-neighbour distances, with the near-copy thresholds;
- :func:`figure_z_profiles`: mean tissue fractions along z (head -> feet), real vs each generated
  set (the curves behind the z-profile error of :mod:`ctsgan.metrics.structure`).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctsgan.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DISPLAY_WINDOW = (-1000.0, 400.0)  # lung + mediastinum window for viewing
PLANES = ("axial", "coronal", "sagittal")


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plane_cut(volume: np.ndarray, plane: str, position: float) -> np.ndarray:
    """2-D cut of a (z, y, x) volume.

    Args:
        volume: (D, H, W) HU.
        plane: ``axial`` (y, x), ``coronal`` (z, x) or ``sagittal`` (z, y); z rows head first.
        position: relative position in [0, 1] along the plane's normal axis.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    axis = PLANES.index(plane)
    n = volume.shape[axis]
    i = min(n - 1, max(0, round(position * (n - 1))))
    return np.take(volume, i, axis=axis)


def figure_planes(
    path: str | Path,
    rows: Sequence[tuple[str, np.ndarray]],
    positions: Sequence[float] = (0.5,),
    window: tuple[float, float] = DISPLAY_WINDOW,
) -> Path:
    """Real vs generated in three planes (paper Figure 1).

    Args:
        rows: (label, (D, H, W) HU volume) per row, e.g. real first, then each generator.
        positions: relative slice positions shown for each plane.
    """
    from matplotlib.figure import Figure

    cols = [(p, pos) for p in PLANES for pos in positions]
    fig = Figure(figsize=(2.4 * len(cols), 2.5 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for r, (label, vol) in enumerate(rows):
        for c, (plane, pos) in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(plane_cut(vol, plane, pos), cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{plane} @ {pos:.0%}", fontsize=10)
            if c == 0:
                ax.set_ylabel(textwrap.fill(label, 16), fontsize=10)
    fig.suptitle(f"Real vs generated, same relative positions (HU window {window[0]:g}..{window[1]:g})", fontsize=11)
    return _save(fig, Path(path))


def figure_grid(
    path: str | Path,
    slices: Sequence[np.ndarray],
    names: Sequence[str],
    title: str,
    max_items: int = 36,
    window: tuple[float, float] = DISPLAY_WINDOW,
) -> Path:
    """A grid of 2-D slices (H, W) HU with their volume names, e.g. middle axial slices."""
    from matplotlib.figure import Figure

    n = min(len(slices), max_items)
    if n == 0:
        raise ValueError("figure_grid needs at least one slice")
    ncols = min(n, 6)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(2.0 * ncols, 2.15 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k in range(nrows * ncols):
        ax = axes[k // ncols][k % ncols]
        ax.axis("off")
        if k < n:
            ax.imshow(slices[k], cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
            ax.set_title(_short_name(str(names[k])), fontsize=7)
    fig.suptitle(f"{title}: middle axial slices of {n} volumes", fontsize=11)
    return _save(fig, Path(path))


def figure_memorization(path: str | Path, mem: Mapping[str, Any], title: str) -> Path:
    """Histograms: generated->nearest training vs training->nearest other training volume.

    Args:
        mem: the ``memorization`` dict of ``metrics.json`` (see
            :meth:`ctsgan.metrics.memorization.MemorizationResult.to_dict`).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    panels = [
        (ax1, mem["feature_distance"], mem["train_nn_feature_distance"], mem.get("feature_threshold"),
         "Inception feature distance to nearest (lower = closer)"),
        (ax2, mem["ssim"], mem["train_nn_ssim"], mem.get("ssim_threshold"), "SSIM to nearest (higher = closer)"),
    ]
    for ax, gen, ref, thr, xlabel in panels:
        values = [v for v in list(gen) + list(ref) if v is not None and np.isfinite(v)]
        bins: Any = np.linspace(min(values), max(values), 21) if values and min(values) < max(values) else 10
        if ref:
            ax.hist(ref, bins=bins, alpha=0.6, label=f"real vs real (n={len(ref)})", color="tab:blue")
        ax.hist(gen, bins=bins, alpha=0.6, label=f"generated vs train (n={len(gen)})", color="tab:orange")
        if thr is not None:
            ax.axvline(thr, color="red", linestyle="--", label=f"near-copy threshold {thr:.3g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("volumes")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle(f"Memorization check: {title} ({mem.get('n_flagged', len(mem.get('flagged', [])))} flagged)", fontsize=11)
    return _save(fig, Path(path))


def figure_z_profiles(
    path: str | Path,
    real: Sequence[Sequence[float]],
    fakes: Mapping[str, Sequence[Sequence[float]]],
    tissues: Sequence[str] = ("lung", "soft", "fat", "bone"),
    errors: Mapping[str, float | None] | None = None,
) -> Path:
    """Mean z-profiles: one panel per tissue, fraction of body voxels vs relative z (head -> feet).

    Args:
        real: (T, bins) mean real curves (T = len(tissues)).
        fakes: set name -> (T, bins) mean generated curves.
        tissues: the row names of the curves.
        errors: set name -> z-profile error, shown in the legend.
    """
    from matplotlib.figure import Figure

    r = np.asarray(real, dtype=float)
    if r.ndim != 2 or r.shape[0] != len(tissues):
        raise ValueError(f"real curves must be ({len(tissues)}, bins), got shape {r.shape}")
    z = (np.arange(r.shape[1]) + 0.5) / r.shape[1]
    fig = Figure(figsize=(3.6 * len(tissues), 3.4), layout="constrained")
    axes = fig.subplots(1, len(tissues), squeeze=False)[0]
    for t, (ax, tissue) in enumerate(zip(axes, tissues, strict=True)):
        ax.plot(z, r[t], color="black", linewidth=2.2, label="real")
        for name, curve in fakes.items():
            c = np.asarray(curve, dtype=float)
            if c.shape != r.shape:
                raise ValueError(f"{name}: curves of shape {c.shape}, the real ones {r.shape}")
            err = (errors or {}).get(name)
            ax.plot(z, c[t], linewidth=1.4, label=name if err is None else f"{name} (err {err:.2f})")
        ax.set_title(tissue, fontsize=10)
        ax.set_xlabel("relative z (0 head, 1 feet)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        if t == 0:
            ax.set_ylabel("fraction of body voxels")
            ax.legend(fontsize=7)
    fig.suptitle("Mean z-profiles: body tissue fractions along z, real vs generated", fontsize=11)
    return _save(fig, Path(path))


def slug(name: str) -> str:
    """File-name-safe form of a set name: ``"phantom (new seed)"`` -> ``"phantom_new_seed"``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_") or "set"


def _short_name(name: str, width: int = 20) -> str:
    """A volume name that fits a small panel title: whole when short, else its start and end."""
    if len(name) <= width:
        return name
    keep = (width - 1) // 2
    return f"{name[:keep]}~{name[-keep:]}"
