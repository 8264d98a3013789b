"""Checks and measures on the real chests of ``../shared/data/chest`` (issue #11).

- :func:`z_lung_profile_check`: is a prepared cube a chest (lung from near the top, falling off at
  the bottom) rather than neck or abdomen?
- :func:`nodule_placement`: for each nodule of ``nodules.csv``, the cube HU at its centre and the
  lung share of a ring around it (a nodule that landed where it belongs is soft tissue in lung).
- :func:`radial_profile`: mean HU on spheres of radius r = k x R around a nodule (R = diameter / 2),
  trilinear samples in mm, so a 6 mm nodule on 3 mm voxels still gets a curve.
- :func:`radial_profile_table`: mean profile per size group and the mean absolute difference (HU)
  of one set of profiles from another.
- :func:`figure_erased`: each nodule before / after erasing, axial | coronal | sagittal.

Volumes are (z, y, x) HU, spacing (z, y, x) mm, nodule centres in voxels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctsgan.data.dataset import ManifestRow, Nodule, PreparedDataset

__all__ = [
    "RADII",
    "SIZE_GROUPS",
    "compare_profiles",
    "cube_nodule_profiles",
    "figure_erased",
    "injected_profiles",
    "lung_profile_verdict",
    "native_nodule_profiles",
    "nodule_placement",
    "profile_mad",
    "radial_profile",
    "radial_profile_table",
    "size_group",
    "z_lung_profile_check",
]

#: r / R at which :func:`radial_profile` samples (0 = centre, 1 = the nodule's edge)
RADII: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
#: name -> [lo, hi) diameter mm
SIZE_GROUPS: dict[str, tuple[float, float]] = {"3-10mm": (3.0, 10.0), "10-20mm": (10.0, 20.0), "20-40mm": (20.0, 40.0)}
#: a cube voxel this dense or denser is soft tissue, not lung (a 13 mm nodule on 3 mm voxels: ~-100)
SOFT_TISSUE_MIN_HU = -300.0
LUNG_MAX_HU = -600.0


def lung_profile_verdict(hu: np.ndarray) -> dict[str, Any]:
    """Lung fraction of the body per axial slice of a (z, y, x) HU cube, and whether it looks like a chest.

    Fractions from :func:`ctsgan.metrics.structure.slice_tissue_fractions` (lung = [-950, -600) HU
    among body voxels). Chest-like: the middle (relative z 0.2-0.7) holds lung (mean >= 0.2), the
    first and last 5 % of slices hardly any (<= 0.1: the apices and the diaphragm are inside the
    cube, neither cut through), the last 10 % less than a third of the middle.

    Returns:
        ``lung_fraction`` (per slice), ``top_5pct``, ``middle``, ``bottom_5pct``, ``bottom_10pct``,
        ``chest_like``.
    """
    from ctsgan.metrics.structure import slice_tissue_fractions

    lung = slice_tissue_fractions(hu)[0]
    d = len(lung)
    k5, k10 = max(1, round(0.05 * d)), max(1, round(0.1 * d))
    middle = float(lung[int(0.2 * d) : max(int(0.7 * d), int(0.2 * d) + 1)].mean())
    top, end5, bottom = float(lung[:k5].mean()), float(lung[-k5:].mean()), float(lung[-k10:].mean())
    return {
        "lung_fraction": [round(float(v), 4) for v in lung],
        "top_5pct": round(top, 4),
        "middle": round(middle, 4),
        "bottom_5pct": round(end5, 4),
        "bottom_10pct": round(bottom, 4),
        "chest_like": bool(middle >= 0.2 and top <= 0.1 and end5 <= 0.1 and bottom < middle / 3),
    }


def z_lung_profile_check(dataset: str | Path, volume_id: str) -> dict[str, Any]:
    """:func:`lung_profile_verdict` of one volume of a prepared dataset, with where its crop lies.

    Returns:
        the verdict plus ``volume_id``, ``crop_start_z``, ``crop_slices`` and ``orig_slices``.
    """
    ds = PreparedDataset(dataset)
    if volume_id not in ds.ids:
        raise ValueError(f"{ds.root / 'manifest.csv'}: no volume {volume_id!r}")
    i = ds.ids.index(volume_id)
    row = ds.rows[i]
    return {
        "volume_id": volume_id,
        **lung_profile_verdict(np.asarray(ds.load(i))),
        "crop_start_z": int(row.crop_start[0]),
        "crop_slices": int(row.crop_shape[0]),
        "orig_slices": int(row.orig_shape[0]),
    }


def _distance_mm(shape: Sequence[int], centre: Sequence[float], spacing: Sequence[float]) -> np.ndarray:
    from ctsgan.nodules.erase_record import distance_mm

    return distance_mm(shape, centre, spacing)



def volumes_with_nodules(dataset: str | Path) -> Iterator[tuple[ManifestRow, list[Nodule], np.ndarray]]:
    """(manifest row, its nodules, its (S, S, S) HU cube) for each volume of a prepared dataset with nodules."""
    ds = PreparedDataset(dataset)
    for i, row in enumerate(ds.rows):
        nods = ds.nodules(row.id)
        if nods:
            yield row, nods, np.asarray(ds.load(i))

def nodule_placement(dataset: str | Path) -> list[dict[str, Any]]:
    """For each nodule of a prepared dataset: centre HU, core peak HU and the lung share of a ring.

    ``core_max_hu``: the highest HU within max(R / 2, one largest voxel) of the centre; ``ring_lung``:
    the fraction of voxels below -600 HU at 1.5 R - 2.5 R. ``soft_centre``: core_max >= -300 HU;
    ``in_lung``: ring_lung >= 0.5.
    """
    out = []
    for row, nods, hu in volumes_with_nodules(dataset):
        vol = hu.astype(np.float32)
        sp = [float(s) for s in row.spacing]
        for n in nods:
            c = (n.z, n.y, n.x)
            dist = _distance_mm(vol.shape, c, sp)
            r = 0.5 * n.diameter_mm
            core = dist <= max(0.5 * r, max(sp))
            ring = (dist >= 1.5 * r) & (dist <= 2.5 * r)
            centre_idx = tuple(int(np.clip(round(v), 0, s - 1)) for v, s in zip(c, vol.shape, strict=True))
            core_max = float(vol[core].max())
            ring_lung = float((vol[ring] < LUNG_MAX_HU).mean()) if ring.any() else float("nan")
            out.append({
                "volume_id": row.id, "z": n.z, "y": n.y, "x": n.x, "diameter_mm": n.diameter_mm,
                "centre_hu": float(vol[centre_idx]), "core_max_hu": core_max, "ring_lung": round(ring_lung, 3),
                "soft_centre": bool(core_max >= SOFT_TISSUE_MIN_HU), "in_lung": bool(ring_lung >= 0.5),
            })
    return out


def _directions(n: int = 64) -> np.ndarray:
    """``n`` near-uniform unit vectors (Fibonacci sphere), (n, 3) as (z, y, x)."""
    k = np.arange(n) + 0.5
    zc = 1.0 - 2.0 * k / n
    rho = np.sqrt(1.0 - zc**2)
    phi = np.pi * (1.0 + 5**0.5) * k
    return np.stack([zc, rho * np.sin(phi), rho * np.cos(phi)], axis=1)


def radial_profile(
    hu: np.ndarray,
    centre_zyx: Sequence[float],
    diameter_mm: float,
    spacing_zyx: Sequence[float],
    radii: Sequence[float] = RADII,
    directions: int = 64,
) -> np.ndarray:
    """Mean HU on spheres of radius ``k * R`` (mm) around a nodule, for each k of ``radii``.

    Samples ``directions`` points per sphere (Fibonacci sphere) with trilinear interpolation
    (``scipy.ndimage.map_coordinates``, order 1; outside the volume: -1024).

    Args:
        hu: (z, y, x) HU; centre_zyx: voxels; diameter_mm: the nodule's diameter (R = half);
        spacing_zyx: (z, y, x) mm; radii: r / R values; directions: points per sphere.

    Returns:
        (len(radii),) float64 mean HU.
    """
    from scipy import ndimage

    if hu.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {hu.shape}")
    if not diameter_mm > 0:
        raise ValueError(f"diameter must be > 0 mm, got {diameter_mm}")
    dirs = _directions(directions)
    sp = np.asarray(spacing_zyx, dtype=np.float64)
    c = np.asarray(centre_zyx, dtype=np.float64)
    vol = np.asarray(hu, dtype=np.float32)
    out = []
    for k in radii:
        pts = c[None] + dirs * (float(k) * 0.5 * float(diameter_mm)) / sp[None]  # (n, 3) voxels
        vals = ndimage.map_coordinates(vol, pts.T, order=1, mode="constant", cval=-1024.0)
        out.append(float(vals.mean()))
    return np.asarray(out, dtype=np.float64)


def size_group(diameter_mm: float) -> str | None:
    """The :data:`SIZE_GROUPS` name holding ``diameter_mm`` (None when outside them all)."""
    for name, (lo, hi) in SIZE_GROUPS.items():
        if lo <= diameter_mm < hi:
            return name
    return None


def radial_profile_table(profiles: Sequence[tuple[float, np.ndarray]]) -> dict[str, list[float]]:
    """Mean profile per size group: ``{group: [HU at each r / R]}`` over (diameter mm, profile) pairs."""
    groups: dict[str, list[np.ndarray]] = {}
    for d, prof in profiles:
        g = size_group(d)
        if g is not None:
            groups.setdefault(g, []).append(np.asarray(prof, dtype=np.float64))
    return {g: [round(float(v), 1) for v in np.mean(p, axis=0)] for g, p in groups.items()}


def profile_mad(a: Sequence[float], b: Sequence[float], radii: Sequence[float] = RADII, max_r: float = 1.5) -> float:
    """Mean absolute difference (HU) of two radial profiles over r / R <= ``max_r`` (the nodule and its edge)."""
    sel = [i for i, k in enumerate(radii) if k <= max_r + 1e-9]
    if len(a) != len(radii) or len(b) != len(radii):
        raise ValueError(f"profiles must have {len(radii)} values, got {len(a)} and {len(b)}")
    return float(np.mean([abs(float(a[i]) - float(b[i])) for i in sel]))


def figure_erased(
    before: str | Path, after: str | Path, nodules: Sequence[Nodule], path: str | Path, half_mm: float = 40.0
) -> Path:
    """Before / after erasing, axial | coronal | sagittal through each nodule centre, one row per nodule.

    Args:
        before, after: prepared dataset dirs (input and erased).
        nodules: the nodules (rows of the input's nodules.csv).
        path: PNG to write.
        half_mm: half the side of the field shown around each nodule (mm).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctsgan.io.atomic import atomic_path

    b, a = PreparedDataset(before), PreparedDataset(after)
    n = len(nodules)
    if n == 0:
        raise ValueError("no nodules to show")
    fig, axes = plt.subplots(n, 6, figsize=(12, 2.1 * n), squeeze=False)
    for r, nod in enumerate(nodules):
        i = b.ids.index(nod.volume_id)
        row = b.rows[i]
        sp = [float(s) for s in row.spacing]
        vols = (np.asarray(b.load(i)), np.asarray(a.load(a.ids.index(nod.volume_id))))
        c = [int(round(v)) for v in (nod.z, nod.y, nod.x)]
        h = [max(2, int(round(half_mm / s))) for s in sp]

        def win(v: np.ndarray, axis: int, c: list[int] = c, h: list[int] = h) -> np.ndarray:
            sl = [slice(max(0, c[k] - h[k]), c[k] + h[k] + 1) for k in range(3)]
            sl[axis] = slice(c[axis], c[axis] + 1)
            return np.squeeze(v[tuple(sl)], axis=axis)

        for j, (vol, label) in enumerate(zip(vols, ("before", "after"), strict=True)):
            for k, (axis, plane) in enumerate(((0, "axial"), (1, "coronal"), (2, "sagittal"))):
                ax = axes[r, 3 * j + k]
                img = win(vol, axis)
                aspect = {0: sp[1] / sp[2], 1: sp[0] / sp[2], 2: sp[0] / sp[1]}[axis]
                ax.imshow(img, cmap="gray", vmin=-1000, vmax=400, aspect=aspect, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{label} {plane}", fontsize=8)
        axes[r, 0].set_ylabel(f"{nod.volume_id}\n{nod.diameter_mm:.1f} mm", fontsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return out


def native_nodule_profiles(chest_dir: str | Path, radii: Sequence[float] = RADII) -> list[dict[str, Any]]:
    """Radial profiles of the nodules of ``chest_dir/annotations.csv`` in the original scans (native voxels).

    Each scan ``<seriesuid>.nii.gz`` is read with SimpleITK and reoriented to (z, y, x) head first
    (:func:`ctsgan.data.series.to_zyx_hu`); the world centre maps to a voxel index through the
    image geometry.

    Returns:
        one dict per nodule: ``volume_id``, ``diameter_mm``, ``spacing`` and ``profile`` (HU per r / R).
    """
    from ctsgan.data.annotations import read_luna_csv
    from ctsgan.data.series import read_volume_file, to_zyx_hu

    root = Path(chest_dir)
    table = read_luna_csv(root / "annotations.csv")
    out = []
    for uid in sorted(table):
        path = root / f"{uid}.nii.gz"
        if not path.exists():
            raise ValueError(f"{root / 'annotations.csv'}: no scan {path.name} for seriesuid {uid}")
        hu, img = to_zyx_hu(read_volume_file(path))
        sp = tuple(float(s) for s in reversed(img.GetSpacing()))
        for n in table[uid]:
            ix, iy, iz = img.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in n.centre_xyz))
            prof = radial_profile(hu, (iz, iy, ix), n.diameter_mm, sp, radii)
            out.append({"volume_id": uid, "diameter_mm": n.diameter_mm, "spacing": [round(s, 3) for s in sp],
                        "profile": [round(float(v), 1) for v in prof]})
    return out


def cube_nodule_profiles(dataset: str | Path, radii: Sequence[float] = RADII) -> list[dict[str, Any]]:
    """Radial profiles of the nodules of a prepared dataset's ``nodules.csv`` in its cubes."""
    out = []
    for row, nods, vol in volumes_with_nodules(dataset):
        for n in nods:
            prof = radial_profile(vol, (n.z, n.y, n.x), n.diameter_mm, row.spacing, radii)
            out.append({"volume_id": row.id, "diameter_mm": n.diameter_mm,
                        "profile": [round(float(v), 1) for v in prof]})
    return out


def injected_profiles(
    clean: str | Path,
    diameters_mm: Sequence[float],
    per_diameter: int,
    seed: int,
    injector: Any = None,
    radii: Sequence[float] = RADII,
    radius_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Inject nodules of the given diameters into a nodule-free prepared dataset and profile them.

    For each diameter, ``per_diameter`` nodules, each into the next volume of ``clean`` in turn
    (one nodule per volume at a time, at a random lung point one radius from the wall), with the
    classical injector (:func:`ctsgan.nodules.classical.classical_inject`) when
    ``injector`` is None (its ball radius ``radius_scale`` x diameter / 2), else the trained one
    (:func:`ctsgan.nodules.inject.inject_nodules`). Profiles use r / R of the nominal diameter.

    Returns:
        one dict per injected nodule: ``volume_id``, ``diameter_mm``, ``profile``.
    """
    from ctsgan.nodules.classical import classical_inject
    from ctsgan.nodules.inject import inject_nodules
    from ctsgan.nodules.lung_mask import lung_mask

    ds = PreparedDataset(clean)
    if len(ds) == 0:
        raise ValueError(f"{ds.root / 'manifest.csv'}: no volumes")
    vols = [np.asarray(ds.load(i)) for i in range(len(ds))]
    sps = [tuple(float(s) for s in r.spacing) for r in ds.rows]
    lungs = [lung_mask(v, sp) for v, sp in zip(vols, sps, strict=True)]
    rng = np.random.default_rng(seed)
    out = []
    k = 0
    for d in diameters_mm:
        for _ in range(per_diameter):
            i = k % len(vols)
            k += 1
            if injector is None:
                new, placed = classical_inject(vols[i], sps[i], rng, float(d), count=1, lung=lungs[i],  # type: ignore[arg-type]
                                               radius_scale=radius_scale)
            else:
                new, placed = inject_nodules(vols[i], lungs[i], injector, sps[i], rng, float(d), 1)
            for c, dd in placed:
                prof = radial_profile(new, c, float(d), sps[i], radii)
                out.append({"volume_id": ds.rows[i].id, "diameter_mm": float(d), "placed_mm": float(dd),
                            "profile": [round(float(v), 1) for v in prof]})
    return out


def compare_profiles(real: Sequence[dict[str, Any]], fake: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean profile per size group of both sets and their mean absolute difference (HU, r / R <= 1.5)."""
    rt = radial_profile_table([(p["diameter_mm"], np.asarray(p["profile"])) for p in real])
    ft = radial_profile_table([(p["diameter_mm"], np.asarray(p["profile"])) for p in fake])
    mad = {g: round(profile_mad(rt[g], ft[g]), 1) for g in rt if g in ft}
    return {"real": rt, "injected": ft, "mad_hu": mad,
            "mad_hu_mean": round(float(np.mean(list(mad.values()))), 1) if mad else None}


def holdout_dataset(dataset: str | Path, out: str | Path, holdout: str) -> Path:
    """A copy of a prepared dataset with ``holdout`` in split ``test`` and every other volume in ``train``.

    Volumes are copied (int16 cubes); ``nodules.csv`` and ``skipped.csv`` come along.

    Raises:
        ValueError: ``holdout`` is not a volume of ``dataset``, or ``out`` already holds a dataset.
    """
    import dataclasses
    import shutil

    from ctsgan.data.dataset import read_skipped, write_manifest, write_nodules, write_skipped
    from ctsgan.nodules.apply import check_new_dataset_dir

    ds = PreparedDataset(dataset)
    if holdout not in ds.ids:
        raise ValueError(f"{ds.root / 'manifest.csv'}: no volume {holdout!r} to hold out (have {', '.join(ds.ids)})")
    dst = Path(out)
    check_new_dataset_dir(dst, ds.root)
    rows = [dataclasses.replace(r, split="test" if r.id == holdout else "train") for r in ds.rows]
    for r in rows:
        (dst / r.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ds.root / r.path, dst / r.path)
    write_manifest(dst / "manifest.csv", rows)
    write_nodules(dst / "nodules.csv", [n for r in rows for n in ds.nodules(r.id)])
    write_skipped(dst / "skipped.csv", read_skipped(ds.root / "skipped.csv"))
    return dst


def nearest_training(vol: np.ndarray, train: Sequence[np.ndarray], train_ids: Sequence[str]) -> dict[str, Any]:
    """Nearest training volume of ``vol`` by mean absolute HU difference of 32^3 cubes and by 3-D SSIM.

    Cubes: :func:`ctsgan.metrics.structure.small_cube` (HU clipped to [-1024, 600], area-averaged);
    SSIM: :func:`ctsgan.metrics.memorization.ssim_volumes` on :func:`downsample_for_ssim` cubes.

    Returns:
        ``nearest_mae`` (id), ``mae_hu``, ``nearest_ssim`` (id), ``ssim``.
    """
    from ctsgan.metrics.memorization import downsample_for_ssim, ssim_volumes
    from ctsgan.metrics.structure import small_cube

    if not train:
        raise ValueError("no training volumes to compare with")
    c = small_cube(vol)
    s = downsample_for_ssim(vol)
    mae = [float(np.abs(c - small_cube(t)).mean()) for t in train]
    ssim = [ssim_volumes(s, downsample_for_ssim(t)) for t in train]
    i, j = int(np.argmin(mae)), int(np.argmax(ssim))
    return {"nearest_mae": train_ids[i], "mae_hu": round(mae[i], 1), "nearest_ssim": train_ids[j],
            "ssim": round(ssim[j], 4)}


def leave_one_out_nearest(vols: Sequence[np.ndarray], ids: Sequence[str]) -> list[dict[str, Any]]:
    """Each real scan's :func:`nearest_training` among the *other* scans: how close a new patient
    comes to a training set of the rest (the reference distances of :func:`copying_test`)."""
    if len(vols) < 2:
        raise ValueError(f"need at least two scans, got {len(vols)}")
    return [{"volume": ids[i], **nearest_training(v, [*vols[:i], *vols[i + 1:]], [*ids[:i], *ids[i + 1:]])}
            for i, v in enumerate(vols)]


def copying_test(generated_mae_hu: Sequence[float], real_loo: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`ctsgan.metrics.memorization.copying_rank_test` of the generated volumes' nearest
    training-scan distances against every real scan's leave-one-out distance
    (:func:`leave_one_out_nearest`): with a handful of scans one held-out patient is one draw of
    "how close does a new patient come", the leave-one-out distances are all of them."""
    from ctsgan.metrics.memorization import copying_rank_test

    new = [r["mae_hu"] for r in real_loo]
    return {**copying_rank_test(generated_mae_hu, new), "new_patient_mae_hu": {r["volume"]: r["mae_hu"] for r in real_loo}}


def _nearest_report(fake: Sequence[np.ndarray], names: Sequence[str], train_vols: Sequence[np.ndarray],
                    train_ids: Sequence[str], held_nn: dict[str, Any]) -> dict[str, Any]:
    """Memorization of one generated set: each volume's :func:`nearest_training` and the counts."""
    gen_nn = [{"volume": n, **nearest_training(v, train_vols, train_ids)} for n, v in zip(names, fake, strict=True)]
    return {
        "generated": gen_nn,
        "heldout": held_nn,
        "generated_min_mae_hu": min(g["mae_hu"] for g in gen_nn) if gen_nn else None,
        "generated_max_ssim": max(g["ssim"] for g in gen_nn) if gen_nn else None,
        "closer_than_heldout": sum(g["mae_hu"] < held_nn["mae_hu"] for g in gen_nn),
    }


def nearest_mix_structure(real_s: Sequence[Any], train_ids: Sequence[str], nearest: Sequence[str]) -> dict[str, Any]:
    """What the training scans themselves score in a generated set's mix of nearest patients.

    Each generated volume is replaced by the training scan nearest to it (``nearest``: one training
    id per volume, e.g. ``nearest_mae`` of :func:`_nearest_report`), and that set of exact copies
    is measured against all the training scans (``real_s``, their
    :class:`~ctsgan.metrics.structure.VolumeStructure` in ``train_ids`` order) as the generated set
    is. A set that leans on a few patients scores a z-profile error above 0 even if every volume
    were a perfect chest: this is the part of the generated set's error that comes from the mix,
    not from the volumes (e.g. what ``generate --guard`` shifts by rejecting one patient's
    neighbours).

    Returns ``counts`` (training id -> volumes nearest to it), ``z_profile_error`` and
    ``z_profile_layout_error`` of the copies.
    """
    from ctsgan.metrics.structure import structure_metrics_from_summaries

    if not nearest:
        raise ValueError("no generated volumes to take the nearest-patient mix of")
    where = {t: i for i, t in enumerate(train_ids)}
    unknown = sorted(set(nearest) - set(where))
    if unknown:
        raise ValueError(f"nearest ids {unknown} are not training scans ({', '.join(train_ids)})")
    st = structure_metrics_from_summaries(real_s, [real_s[where[t]] for t in nearest])
    counts = Counter(nearest)
    return {"counts": {t: counts[t] for t in train_ids},
            **{k: st[k] for k in ("z_profile_error", "z_profile_layout_error")}}


def figure_holdout(data: str | Path, generated: str | Path, memorization: dict[str, Any], path: str | Path) -> Path:
    """What the memorization numbers mean, in three planes: the held-out scan, then the generated
    volume nearest a training scan beside that scan, then the farthest one beside its nearest
    (``memorization`` from :func:`evaluate_holdout`, volumes from ``generated``)."""
    from ctsgan.viz.figures import figure_planes

    ds = PreparedDataset(data)
    gen = sorted(memorization["generated"], key=lambda g: g["mae_hu"])
    if not gen:
        raise ValueError("no generated volumes in the memorization report")
    held = memorization["heldout"]
    held_id = next(r.id for r in ds.rows if r.split != "train")
    rows = [(f"held-out {held_id}: {held['mae_hu']} HU from {held['nearest_mae']}", np.asarray(ds.load(ds.ids.index(held_id))))]
    for tag, g in (("nearest", gen[0]), ("farthest", gen[-1])):
        rows.append((f"generated, {tag}: {g['mae_hu']} HU from", np.load(Path(generated) / g["volume"])))
        rows.append((g["nearest_mae"], np.asarray(ds.load(ds.ids.index(g["nearest_mae"])))))
    return figure_planes(path, rows, positions=(0.5,))


def evaluate_holdout(
    checkpoint: str | Path, data: str | Path, out: str | Path, holdout: str, n_generate: int = 8, seed: int = 0,
    raw: bool = True, aligned: bool = False, guard: bool = False,
) -> dict[str, Any]:
    """Generate from ``checkpoint`` and measure it against a hold-out dataset (:func:`holdout_dataset`).

    ``n_generate`` volumes (npy, CPU, seeds ``(seed, i)``) go to ``out/generated``; then

    - ``structure``: :func:`ctsgan.metrics.structure.structure_metrics`, training scans vs
      generated, and ``structure_heldout``: training scans vs the held-out scan (the reference:
      what a real unseen patient scores);
    - ``copies``: :func:`ctsgan.metrics.structure.copy_distances` (training data only: the
      nearest generated-to-training distance over the training scans' own nearest-other distance);
    - ``memorization``: each generated volume's nearest training scan (:func:`nearest_training`)
      beside the held-out scan's nearest training scan: a generated volume much closer to a
      training scan than the unseen patient is, is a copy;
    - ``nearest_mix``: :func:`nearest_mix_structure`, the training scans measured in the
      generated set's mix of nearest patients (how much of its z-profile error is the mix);
    - ``z_profile_floor``: :func:`ctsgan.metrics.structure.z_profile_sampling_floor`, what a
      perfect generator's set of this many volumes scores (the z-profile error's sampling noise);
    - ``z_profile_bootstrap``: :func:`ctsgan.metrics.structure.z_profile_bootstrap`, the 90 %
      bootstrap interval of the generated set's z-profile error (another set from the same generator);
    - ``copying_test``: :func:`copying_test`, the generated volumes' nearest distances against
      every real scan's leave-one-out distance (is the set closer than new patients are?);
    - ``raw`` (with ``raw`` and an HU calibration beside the checkpoint): the same seeds without it
      (``out/generated_raw``), its ``structure`` and memorization counts;
    - ``aligned_copies`` (with ``aligned``): :func:`aligned_report`, the same comparison once the
      training scans may be stretched and turned in-plane (a scaled copy is still a copy);
    - ``guarded`` (with ``guard``): :func:`guarded_report`, ``n_generate`` volumes that passed
      ``generate --guard`` against the training scans, measured the same way.
    """
    from ctsgan.data.hu_calibration import calibration_path
    from ctsgan.generation import generate_volumes
    from ctsgan.metrics.structure import (
        copy_distances,
        structure_metrics_from_summaries,
        volume_structure,
        z_profile_bootstrap,
        z_profile_sampling_floor,
    )

    out = Path(out)
    paths = generate_volumes(checkpoint, n_generate, out / "generated", seed=seed, fmt="npy", device="cpu",
                             previews=True, overwrite=True)
    ds = PreparedDataset(data)
    train_ids = [r.id for r in ds.rows if r.split == "train"]
    if holdout not in ds.ids or holdout in train_ids:
        raise ValueError(f"{ds.root}: {holdout!r} is not a held-out volume of this dataset")
    train_vols = [np.asarray(ds.load(ds.ids.index(i))) for i in train_ids]
    held = np.asarray(ds.load(ds.ids.index(holdout)))
    fake = [np.load(p) for p in paths]
    held_nn = nearest_training(held, train_vols, train_ids)
    real_s, fake_s, held_s = [volume_structure(v) for v in train_vols], [volume_structure(v) for v in fake], [volume_structure(held)]
    res: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "train_ids": train_ids,
        "holdout": holdout,
        "n_generated": len(paths),
        "structure": structure_metrics_from_summaries(real_s, fake_s),
        "structure_heldout": structure_metrics_from_summaries(real_s, held_s),
        "copies": copy_distances(real_s, fake_s),
        "copies_heldout": copy_distances(real_s, held_s),
        "memorization": _nearest_report(fake, [Path(p).name for p in paths], train_vols, train_ids, held_nn),
    }
    res["nearest_mix"] = nearest_mix_structure(real_s, train_ids, [g["nearest_mae"] for g in res["memorization"]["generated"]])
    res["z_profile_floor"] = z_profile_sampling_floor([s.profile for s in real_s], len(paths))
    res["z_profile_bootstrap"] = z_profile_bootstrap([s.profile for s in real_s], [s.profile for s in fake_s])
    loo = leave_one_out_nearest([*train_vols, held], [*train_ids, holdout])
    res["copying_test"] = copying_test([g["mae_hu"] for g in res["memorization"]["generated"]], loo)
    if aligned:
        res["aligned_copies"] = aligned_report([f.cube for f in fake_s], held_s[0].cube, train_vols, train_ids)
    if guard:
        patients = [ds.rows[ds.ids.index(i)].patient_id for i in train_ids]
        res["guarded"] = guarded_report(checkpoint, train_vols, train_ids, patients, out / "generated_guarded", n_generate,
                                        seed, real_s, held_nn, loo)
    if raw and calibration_path(checkpoint).is_file():
        raw_paths = generate_volumes(checkpoint, n_generate, out / "generated_raw", seed=seed, fmt="npy", device="cpu",
                                     previews=False, overwrite=True, calibrated=False)
        rawv = [np.load(p) for p in raw_paths]
        mem = _nearest_report(rawv, [Path(p).name for p in raw_paths], train_vols, train_ids, held_nn)
        res["raw"] = {"structure": structure_metrics_from_summaries(real_s, [volume_structure(v) for v in rawv]),
                      **{k: mem[k] for k in ("generated_min_mae_hu", "generated_max_ssim", "closer_than_heldout")}}
    return res


def guarded_report(
    checkpoint: str | Path, train_vols: Sequence[np.ndarray], train_ids: Sequence[str], patients: Sequence[str],
    out: Path, n_generate: int, seed: int,
    real_s: Sequence[Any], held_nn: dict[str, Any], real_loo: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """``n_generate`` volumes through the privacy guard (:mod:`ctsgan.generation.guard`, its
    automatic threshold over the training scans ``train_vols`` of ``patients``) into ``out``,
    measured as :func:`evaluate_holdout` measures the plain ones (``real_s``: the training scans'
    :class:`~ctsgan.metrics.structure.VolumeStructure`; ``held_nn``, ``real_loo``: the held-out
    scan's nearest training scan and every real scan's leave-one-out one).

    Returns ``threshold_hu``, ``candidates`` and ``kept`` (from the guard's log), ``structure``,
    ``memorization`` (:func:`_nearest_report`), ``nearest_mix`` (:func:`nearest_mix_structure`),
    ``z_profile_floor``, ``z_profile_bootstrap`` and ``copying_test``; or ``error`` and the counts
    when the guard gave up.
    """
    from ctsgan.generation import generate_volumes
    from ctsgan.generation.guard import GuardLog, TrainingSetGuard, guard_log_path
    from ctsgan.metrics.structure import (
        structure_metrics_from_summaries,
        volume_structure,
        z_profile_bootstrap,
        z_profile_sampling_floor,
    )

    guard = TrainingSetGuard(train_vols, train_ids, patients)
    res: dict[str, Any] = {"threshold_hu": round(guard.threshold_hu, 1)}
    try:
        paths = generate_volumes(checkpoint, n_generate, out, seed=seed, fmt="npy", device="cpu", previews=False,
                                 overwrite=True, guard=guard)
    except RuntimeError as e:
        paths, res["error"] = [], str(e)
    decided = GuardLog(guard_log_path(out, seed)).read()
    res |= {"candidates": len(decided), "kept": sum(decided.values())}
    if paths:
        vols = [np.load(p) for p in paths]
        mem = _nearest_report(vols, [Path(p).name for p in paths], train_vols, train_ids, held_nn)
        fake_s = [volume_structure(v) for v in vols]
        res |= {"structure": structure_metrics_from_summaries(real_s, fake_s),
                "memorization": mem,
                "nearest_mix": nearest_mix_structure(real_s, train_ids, [g["nearest_mae"] for g in mem["generated"]]),
                "z_profile_floor": z_profile_sampling_floor([s.profile for s in real_s], len(vols)),
                "z_profile_bootstrap": z_profile_bootstrap([s.profile for s in real_s], [s.profile for s in fake_s]),
                "copying_test": copying_test([g["mae_hu"] for g in mem["generated"]], real_loo)}
    return res


def aligned_report(
    fake_cubes: list[np.ndarray], held_cube: np.ndarray, train_vols: list[np.ndarray], train_ids: list[str]
) -> dict[str, Any]:
    """Generated volumes and the held-out scan (their :func:`ctsgan.metrics.structure.small_cube`
    cubes, e.g. ``VolumeStructure.cube``) against in-plane stretched / turned training scans
    (:func:`ctsgan.metrics.structure.aligned_nearest_distances`, its default grid).

    Returns ``heldout_hu`` (the unseen patient's aligned distance), ``generated_hu`` (one per
    generated volume), ``best`` (each one's nearest: training id, scale_y, scale_x, angle) and
    ``closer_than_heldout``: how many generated volumes come closer than the unseen patient.
    """
    from ctsgan.metrics.structure import aligned_nearest_distances

    dist, best = aligned_nearest_distances([held_cube, *fake_cubes], train_vols)
    return {
        "heldout_hu": round(float(dist[0]), 1),
        "generated_hu": [round(float(d), 1) for d in dist[1:]],
        "best": [[train_ids[b[0]], *b[1:]] for b in best[1:]],
        "closer_than_heldout": int((dist[1:] < dist[0]).sum()),
    }


def checkpoint_trajectory(
    run_dir: str | Path, data: str | Path, out: str | Path, holdout: str, n_generate: int = 8, seed: int = 0,
    aligned: bool = False, guard: bool = False,
) -> list[dict[str, Any]]:
    """:func:`evaluate_holdout` for every checkpoint a run kept (oldest first; calibrated where the
    run's config asks for an HU calibration: fitted for each checkpoint that lacks one).

    Run with ``checkpoint_every`` at the interval wanted and ``keep_last`` large enough to keep
    them all. Returns one row per checkpoint: ``step``, the structure numbers (``z_profile_error``,
    ``z_profile_layout_error``, ``z_variation_ratio``, ``diversity_ratio``), ``copy_ratio``
    (training data only) and the held-out comparison (``min_mae_hu``, ``max_ssim``,
    ``closer_than_heldout`` of ``n_generated``), ``copy_auc`` / ``copy_p`` (:func:`copying_test`);
    with ``aligned`` also ``aligned_min_hu``,
    ``aligned_heldout_hu`` and ``aligned_closer_than_heldout`` (:func:`aligned_report`); with
    ``guard`` also ``guarded`` (:func:`guarded_row`).
    """
    from ctsgan.data.hu_calibration import calibration_path
    from ctsgan.generation.calibration import calibrate_checkpoint
    from ctsgan.training.checkpoint import list_checkpoints, load_checkpoint

    found = list_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir}: no checkpoints")
    rows = []
    for step, ckpt in found:
        if load_checkpoint(ckpt)["config"].get("hu_calibration") and not calibration_path(ckpt).is_file():
            calibrate_checkpoint(ckpt, data, device="cpu")
        r = evaluate_holdout(ckpt, data, Path(out) / f"step-{step:08d}", holdout, n_generate, seed, raw=False,
                             aligned=aligned, guard=guard)
        st, mem = r["structure"], r["memorization"]
        al = r.get("aligned_copies")
        rows.append({
            "step": step,
            **{k: st[k] for k in ("z_profile_error", "z_profile_layout_error", "z_variation_ratio", "diversity_ratio")},
            "copy_ratio": r["copies"].get("copy_ratio"),
            "min_mae_hu": mem["generated_min_mae_hu"],
            "max_ssim": mem["generated_max_ssim"],
            "closer_than_heldout": mem["closer_than_heldout"],
            "n_generated": r["n_generated"],
            "heldout_mae_hu": mem["heldout"]["mae_hu"],
            "copy_auc": r["copying_test"]["auc_closer"],
            "copy_p": r["copying_test"]["p_closer"],
            **({"aligned_min_hu": min(al["generated_hu"]), "aligned_heldout_hu": al["heldout_hu"],
                "aligned_closer_than_heldout": al["closer_than_heldout"]} if al else {}),
            **({"guarded": guarded_row(r["guarded"])} if guard else {}),
        })
    return rows


def guarded_row(g: dict[str, Any]) -> dict[str, Any]:
    """The trajectory's numbers of a :func:`guarded_report`: ``kept`` of ``candidates``,
    ``z_profile_error``, ``diversity_ratio``, ``closer_than_heldout``, ``copy_auc`` (None where
    the guard let nothing through)."""
    st, mem, ct = g.get("structure", {}), g.get("memorization", {}), g.get("copying_test", {})
    return {"kept": g["kept"], "candidates": g["candidates"], "z_profile_error": st.get("z_profile_error"),
            "diversity_ratio": st.get("diversity_ratio"), "closer_than_heldout": mem.get("closer_than_heldout"),
            "n": len(mem.get("generated", [])), "copy_auc": ct.get("auc_closer")}


def holdout_ctsgan(
    dataset: str | Path,
    out: str | Path,
    config: str | Path,
    train_seconds: float,
    holdout: str = "LIDC-IDRI-0006",
    n_generate: int = 8,
    seed: int = 0,
    steps: int | None = None,
    progress: bool = False,
    aligned: bool = False,
    guard: bool = False,
) -> dict[str, Any]:
    """Part 4 of issue #11: train CT-SGAN on all scans but one, generate, and measure.

    Steps: :func:`holdout_dataset` (``holdout`` -> test, the rest -> train) at ``out/data``; train
    CT-SGAN with ``config`` (a preset name or YAML path; its ``size`` must be the dataset's) for at
    most ``train_seconds`` (or the config's / ``steps`` steps, whichever ends first) into
    ``out/run``; then :func:`evaluate_holdout` on the last checkpoint (``n_generate`` volumes;
    ``aligned``: with its aligned copy check; ``guard``: also a guarded set).

    Returns:
        the numbers as a JSON-ready dict (also written to ``out/holdout.json``).
    """
    import json
    import time

    from ctsgan.io.atomic import atomic_write_text
    from ctsgan.training import train
    from ctsgan.training.checkpoint import load_checkpoint
    from ctsgan.training.recipes import get_recipe

    if not train_seconds > 0:
        raise ValueError(f"train_seconds must be > 0, got {train_seconds}")
    out = Path(out)
    cfg = get_recipe("ctsgan").load_config(str(config))
    src = PreparedDataset(dataset)
    if src.size != cfg.size:  # type: ignore[attr-defined]
        raise ValueError(f"{src.root}: volumes are {src.size}^3 but config {config} has size {cfg.size}")  # type: ignore[attr-defined]
    data = holdout_dataset(dataset, out / "data", holdout)
    if steps is not None:
        cfg.steps = int(steps)
    cfg.seed = seed
    t0 = time.perf_counter()
    ckpt = train("ctsgan", cfg, data, out / "run", progress=progress, time_limit_s=float(train_seconds))
    train_s = time.perf_counter() - t0
    res: dict[str, Any] = {
        "config": str(config),
        "size": int(src.size),
        "train_seconds_limit": float(train_seconds),
        "train_seconds": round(train_s, 1),
        "steps": int(load_checkpoint(ckpt)["step"]),
        **evaluate_holdout(ckpt, data, out, holdout, n_generate=n_generate, seed=seed, aligned=aligned, guard=guard),
    }
    atomic_write_text(out / "holdout.json", json.dumps(res, indent=1))
    return res
