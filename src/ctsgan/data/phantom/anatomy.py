"""Procedural chest anatomy on a fine grid, in HU before the scanner (blur, noise).

Everything is drawn from the patient parameters (:mod:`.patient`) with closed-form shapes:

- body outline: a super-ellipse per axial slice; tissue layers follow the *depth* below the skin
  along the ray from the body centre (skin, subcutaneous fat, muscle, the rib band with
  intercostal muscle), so the layers stay parallel to the outline;
- thoracic cavity below the rib band: mediastinal fat, two lungs (apex taper, diaphragm domes,
  cut by the mediastinum, heart and spine), heart (pericardial fat, myocardium, blood pool),
  aorta, pulmonary trunk and arteries, superior vena cava, oesophagus, trachea and main bronchi;
- inside the lungs: artery, vein and bronchus trees (:mod:`.trees`) and parenchyma texture;
- below the domes: liver, stomach with its air bubble, spleen, visceral fat;
- bones: vertebrae (body with cortex, discs, canal, posterior elements), 12 rib pairs that drop
  towards the front and end in costal cartilage, sternum, scapulae;
- the scanner table (curved carbon shell on foam, flat base) below the body, with an air gap.

Shapes are built slab by slab along z (so memory stays a few slabs of the grid); tubes and trees
are drawn with anti-aliased edges only inside their bounding boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ctsgan.data.phantom.grid import Grid, coverage, segment_distance
from ctsgan.data.phantom.patient import Patient
from ctsgan.data.phantom.trees import grow_tree

AIR_HU = -1000.0


class Tissue(IntEnum):
    """Labels of the phantom's tissue map (``Phantom.labels``)."""

    AIR = 0
    TABLE = 1
    FAT = 2
    SOFT = 3  # skin, muscle, oesophagus, abdominal organs other than the liver
    LUNG = 4
    VESSEL = 5  # pulmonary vessels inside the lungs
    AIRWAY = 6  # trachea, bronchi (lumen)
    HEART = 7
    GREAT_VESSEL = 8  # aorta, pulmonary trunk/arteries, vena cava
    BONE = 9
    LIVER = 10
    NODULE = 11


@dataclass
class Landmarks:
    """Organ positions (mm, (z, y, x)) shared by the drawing steps."""

    cx: float  # body centre x (reference)
    cy: float  # body centre y (reference)
    y_back: float
    spine_y: float
    carina: np.ndarray
    heart_c: np.ndarray
    heart_r: np.ndarray  # semi-axes (z, long, short)
    tubes: list[tuple[np.ndarray, np.ndarray, float, float, str]]  # mediastinal tubes


def _interp_matrix(n: int, spacing: float, step: float) -> np.ndarray:
    """(n, k) weights that spread k coarse samples (``step`` mm apart) smoothly onto n voxels."""
    k = int(np.ceil(n * spacing / step)) + 3
    pos = (np.arange(n) + 0.5) * spacing / step + 1.0  # voxel centres in coarse units
    m = np.exp(-0.5 * ((pos[:, None] - np.arange(k)[None, :]) / 0.75) ** 2)
    return (m / m.sum(axis=1, keepdims=True)).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, ...], corr_mm: float) -> np.ndarray:
    """Zero-mean, unit-std random field (float32, ``shape``) smooth over about ``corr_mm`` mm.

    White noise on a coarse grid (one sample per ``corr_mm``) spread onto the voxels with
    separable Gaussian weights (three small matrix products), so it costs little even at 224^3.
    """
    mats = [_interp_matrix(n, s, corr_mm) for n, s in zip(shape, spacing, strict=True)]
    c = rng.standard_normal(tuple(m.shape[1] for m in mats)).astype(np.float32)
    f = np.einsum("xk,ijk->ijx", mats[2], c)
    f = np.einsum("yj,ijx->iyx", mats[1], f)
    f = np.tensordot(mats[0], f, axes=(1, 0))
    f -= f.mean()
    f /= f.std() + 1e-6
    return np.ascontiguousarray(f, dtype=np.float32)


def _landmarks(P: Patient) -> Landmarks:
    cx = P.body_shift_x
    y_back = min(P.half_depth + 10.0, P.fov_xy / 2 - P.table_gap - 30.0)
    cy = y_back - P.half_depth
    spine_y = y_back - P.spine_depth
    carina_z = P.apex_z + 70.0
    carina = np.array([carina_z, spine_y - 42.0, cx])
    hs = P.heart_scale
    dome_l = P.dome_right_z + P.dome_left_offset
    heart_c = np.array([dome_l - 36.0 * hs, cy - 0.2 * P.half_depth, cx + 20.0])
    heart_r = np.array([46.0, 60.0, 43.0]) * hs
    heart_top = heart_c[0] - 0.7 * heart_r[0]
    arch_z = P.apex_z + 42.0
    asc0 = np.array([heart_top + 15.0, heart_c[1] - 5.0, cx + 2.0])
    asc1 = np.array([arch_z + 8.0, spine_y - 75.0, cx - 2.0])
    arch = np.array([arch_z, spine_y - 50.0, cx + 12.0])
    desc0 = np.array([arch_z + 18.0, spine_y - 22.0, cx + 24.0])
    desc1 = np.array([P.fov_z + 10.0, spine_y - 24.0, cx + 10.0])
    pa0 = np.array([heart_top + 20.0, heart_c[1] - 28.0, cx + 28.0])
    pa1 = np.array([carina_z + 18.0, spine_y - 68.0, cx + 18.0])
    hil_l = np.array([carina_z + 15.0, spine_y - 55.0, cx + 58.0])
    hil_r = np.array([carina_z + 22.0, spine_y - 55.0, cx - 58.0])
    svc0 = np.array([-10.0, spine_y - 80.0, cx - 30.0])
    svc1 = np.array([heart_top + 10.0, heart_c[1] - 12.0, cx - 28.0])
    bronchus_r = np.array([carina_z + 22.0, spine_y - 42.0, cx - 40.0])
    bronchus_l = np.array([carina_z + 40.0, spine_y - 40.0, cx + 45.0])
    tubes = [
        (asc0, asc1, 15.0, 14.0, "aorta"),
        (asc1, arch, 14.0, 13.0, "aorta"),
        (arch, desc0, 13.0, 12.0, "aorta"),
        (desc0, desc1, 12.0, 10.5, "aorta"),
        (svc0, svc1, 10.0, 10.0, "vein"),
        (pa0, pa1, 14.0, 13.0, "pa"),
        (pa1, hil_l, 11.0, 9.0, "pa"),
        (pa1, hil_r, 11.0, 9.0, "pa"),
        (np.array([-10.0, spine_y - 28.0, cx + 6.0]), np.array([P.fov_z + 10, spine_y - 30.0, cx + 14.0]), 8.0, 8.0, "oesophagus"),
        (np.array([-10.0, spine_y - 44.0, cx]), carina, 9.5, 9.0, "trachea"),
        (carina, bronchus_r, 7.5, 6.5, "bronchus"),
        (carina, bronchus_l, 7.0, 6.0, "bronchus"),
    ]
    return Landmarks(cx, cy, y_back, spine_y, carina, heart_c, heart_r, tubes)


def _heart_q(z: np.ndarray, y: np.ndarray, x: np.ndarray, L: Landmarks, angle: float) -> np.ndarray:
    """Normalised ellipsoid radius of the heart (1 on its surface); long axis points left-anterior."""
    dz, dy, dx = z - L.heart_c[0], y - L.heart_c[1], x - L.heart_c[2]
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = dx * ca - dy * sa  # along the long axis (to the left and to the front)
    v = dx * sa + dy * ca
    return np.sqrt((dz / L.heart_r[0]) ** 2 + (u / L.heart_r[1]) ** 2 + (v / L.heart_r[2]) ** 2)


def draw_anatomy(
    grid: Grid, P: Patient, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Landmarks]:
    """Draw the noise-free anatomy.

    Args:
        grid: the fine grid (z, y, x) to draw on.
        P: patient parameters.
        rng: randomness for trees and textures.

    Returns:
        hu: float32 (z, y, x) HU; lung: float32 (z, y, x) lung occupancy in [0, 1] (vessels and
        small airways inside the lung count as lung); labels: uint8 (z, y, x) :class:`Tissue`;
        landmarks.
    """
    nz, ny, nx = grid.shape
    hu = np.full(grid.shape, AIR_HU, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    lung = np.zeros(grid.shape, dtype=np.float32)
    L = _landmarks(P)
    zs, ys, xs = grid.coords()
    soft_tex = smooth_field(rng, grid.shape, grid.spacing, 10.0)
    lung_tex = smooth_field(rng, grid.shape, grid.spacing, 6.0)
    fat_blobs = smooth_field(rng, grid.shape, grid.spacing, 14.0)
    # per-slice outline wobble (smooth along z)
    zn = zs[:, 0, 0] / P.fov_z
    ph = rng.uniform(0, 2 * np.pi, 3)
    ax_z = P.half_width * (1.0 + 0.03 * np.sin(2 * np.pi * zn + ph[0]) - 0.05 * np.clip((P.apex_z + 20 - zs[:, 0, 0]) / 40, 0, 1))
    ay_z = P.half_depth * (1.0 + 0.03 * np.sin(2 * np.pi * zn + ph[1]))
    cx_z = L.cx + 4.0 * np.sin(np.pi * zn + ph[2])
    cy_z = L.y_back - ay_z
    dome_l = P.dome_right_z + P.dome_left_offset
    chunk = 16
    for z0 in range(0, nz, chunk):
        sl = slice(z0, min(nz, z0 + chunk))
        _draw_slab(hu[sl], labels[sl], lung[sl], zs[sl], ys, xs, ax_z[sl, None, None], ay_z[sl, None, None],
                   cx_z[sl, None, None], cy_z[sl, None, None], dome_l, P, L, soft_tex[sl], lung_tex[sl], fat_blobs[sl], grid.voxel_mm)
    _draw_mediastinum(hu, labels, grid, P, L)
    _draw_trees(hu, labels, lung, grid, P, L, rng)
    _draw_table(hu, labels, ys, xs, P, L)
    return hu, lung, labels, L


def _draw_slab(
    hu: np.ndarray, labels: np.ndarray, lung: np.ndarray, z: np.ndarray, y: np.ndarray, x: np.ndarray,
    ax: np.ndarray, ay: np.ndarray, cx: np.ndarray, cy: np.ndarray, dome_l: float, P: Patient, L: Landmarks,
    soft_tex: np.ndarray, lung_tex: np.ndarray, fat_blobs: np.ndarray, w: float,
) -> None:
    """Body layers, cavity, lungs, abdomen and bones for a slab of axial slices (in place);
    ``w`` is the voxel size (mm) for anti-aliased thin structures."""
    f32 = np.float32
    X = (x - cx).astype(f32)
    Y = (y - cy).astype(f32)
    p = f32(P.shape_power)
    rn = ((np.abs(X) / ax) ** p + (np.abs(Y) / ay) ** p) ** (1 / p)
    rho = np.sqrt(X * X + Y * Y)
    depth = rho * (1.0 / np.maximum(rn, f32(1e-3)) - 1.0)  # mm below the skin along the ray
    psi = np.arctan2(np.abs(X), Y)  # 0 = posterior midline, pi = anterior midline
    zz = np.broadcast_to(z, depth.shape)
    upper = np.clip((dome_l - z) / 150.0, 0, 1)
    fat_t = P.fat_mm * (0.65 + 0.55 * np.sin(psi) + 0.3 * np.clip(-np.cos(psi), 0, 1) * (1 - upper))
    mus_t = P.muscle_mm * (1.0 + 1.6 * np.exp(-((psi / 0.75) ** 2))) + 9.0 * np.exp(-(((psi - 2.3) / 0.45) ** 2)) * upper
    d_rib = fat_t + mus_t
    rib_t = 5.0
    d_cav = d_rib + rib_t + 2.0
    body = depth > 0
    # layers: fat under the skin, muscle, intercostal / rib band, then the cavity
    _set(hu, labels, body, P.muscle_hu - 15.0, Tissue.SOFT)
    _set(hu, labels, body & (depth > 1.5) & (depth <= fat_t), P.fat_hu, Tissue.FAT)
    _set(hu, labels, depth > fat_t, P.muscle_hu, Tissue.SOFT)
    thorax = zz > P.apex_z - 25.0
    cavity = (depth > d_cav) & thorax
    neck = (depth > d_cav) & ~thorax
    _set(hu, labels, neck & (fat_blobs > 0.6), P.fat_hu + 20.0, Tissue.FAT)
    # diaphragm: two paraboloid domes, the right one higher
    xr, xl = -0.45 * ax, 0.45 * ax
    yd = -0.12 * ay
    zd_r = P.dome_right_z + P.dome_height * (((X - xr) / (0.55 * ax)) ** 2 + ((Y - yd) / (0.75 * ay)) ** 2)
    zd_l = dome_l + P.dome_height * (((X - xl) / (0.55 * ax)) ** 2 + ((Y - yd) / (0.75 * ay)) ** 2)
    zd = np.minimum(zd_r, zd_l)
    chest = cavity & (zz < zd)
    abdomen = cavity & (zz >= zd)
    _set(hu, labels, chest, P.fat_hu + 5.0, Tissue.FAT)
    # abdomen: soft organs, visceral fat, liver on the right, stomach (air bubble) and spleen on the left
    _set(hu, labels, abdomen, P.muscle_hu - 10.0, Tissue.SOFT)
    _set(hu, labels, abdomen & (fat_blobs > 0.6), P.fat_hu, Tissue.FAT)
    liver = abdomen & (X < 0.15 * ax + 0.15 * (zz - zd)) & (zz < zd + 160.0) & (Y < 0.75 * ay)
    _set(hu, labels, liver, P.liver_hu, Tissue.LIVER)
    stomach = abdomen & ~liver & (X > 0.1 * ax) & (Y < 0.1 * ay) & (zz < zd + 90.0)
    _set(hu, labels, stomach, P.muscle_hu - 15.0, Tissue.SOFT)
    _set(hu, labels, stomach & (Y < -0.45 * ay) & (zz < zd + 25.0), AIR_HU, Tissue.AIR)
    spleen = abdomen & ~liver & (X > 0.35 * ax) & (Y > 0.15 * ay) & (zz < zd + 100.0)
    _set(hu, labels, spleen, P.muscle_hu, Tissue.SOFT)
    # lungs: the chest cavity minus the mediastinum, heart and spine, tapered at the apex
    Xs = x - L.cx
    Ys = y - L.spine_y
    taper = 1.7 * np.clip((z - P.apex_z) / 110.0, 0.0, 1.0) ** 0.6
    apex_r = np.sqrt(((np.abs(X) - 0.5 * ax) / (0.4 * ax)) ** 2 + ((Y + 0.05 * ay) / (0.75 * ay)) ** 2)
    med = np.abs(Xs - 4.0) < P.mediastinum_half + 10.0 * np.clip(-(Ys + 90.0) / 60.0, 0, 1)
    build = (P.half_width / 150.0 + P.half_depth / 105.0) / 2
    spine_zone = ((Xs / (42.0 * build)) ** 2 + ((Ys - 5.0) / (32.0 * build)) ** 2 < 1.0) | ((Ys > 0) & (np.abs(Xs) < 38.0 * build))
    heart_zone = _heart_q(z, y, x, L, P.heart_angle) < 1.12
    lungs = chest & (apex_r < taper) & ~med & ~spine_zone & ~heart_zone
    lung_hu = P.lung_hu + P.lung_gradient * (Y / ay + 1.0) * 0.5 + 14.0 * lung_tex
    # oblique fissures: 1 mm pleural sheets running down and forwards from the back of each lung
    zf = P.apex_z + 55.0 + 0.9 * (ay - Y) + 0.12 * np.abs(X)
    sheet = np.float32(1.0 / w) * np.clip(1.0 - np.abs(z - zf) / w, 0.0, 1.0)
    lung_hu = lung_hu + np.minimum(sheet, 1.0) * (P.muscle_hu - 40.0 - lung_hu)
    _set(hu, labels, lungs, lung_hu, Tissue.LUNG)
    lung[lungs] = 1.0
    # soft-tissue texture everywhere in the body but the lungs and air
    tex = body & ~lungs & (hu > -500)
    hu[tex] += 7.0 * soft_tex[tex]
    _draw_bones(hu, labels, z, X, Xs, Ys, depth, psi, d_rib, rib_t * (P.half_width / 150.0), P, L)


def _set(hu: np.ndarray, labels: np.ndarray, mask: np.ndarray, value: float | np.ndarray, tissue: Tissue) -> None:
    """``hu[mask] = value`` and ``labels[mask] = tissue``; mask and value broadcast to the slab."""
    mask = np.broadcast_to(mask, hu.shape)
    hu[mask] = np.broadcast_to(value, hu.shape)[mask] if isinstance(value, np.ndarray) else value
    labels[mask] = tissue


def _draw_bones(
    hu: np.ndarray, labels: np.ndarray, z: np.ndarray, X: np.ndarray, Xs: np.ndarray, Ys: np.ndarray,
    depth: np.ndarray, psi: np.ndarray, d_rib: np.ndarray, rib_t: float, P: Patient, L: Landmarks,
) -> None:
    """Vertebrae, ribs with costal cartilage, sternum and scapulae for a slab (in place)."""
    bs = P.bone_scale
    build = (P.half_width / 150.0 + P.half_depth / 105.0) / 2  # bigger people, bigger bones
    cortex_hu, medulla_hu = 900.0 * bs, 230.0 * bs
    zz = np.broadcast_to(z, depth.shape)
    # --- vertebrae: body (ellipse with cortex), discs, canal, posterior elements
    grow = (1.0 + 0.25 * z / P.fov_z) * build
    rx, ry = 17.0 * grow, 14.0 * grow
    q = np.sqrt((Xs / rx) ** 2 + (Ys / ry) ** 2)
    phase = np.mod(z - P.apex_z, P.vertebra_pitch)
    disc = phase < 5.0
    vb = (q < 1.0) & ~disc
    rim = (1.0 - q) * np.minimum(rx, ry) < 2.2
    _set(hu, labels, vb, np.where(rim, cortex_hu, medulla_hu).astype(np.float32), Tissue.BONE)
    _set(hu, labels, (q < 1.0) & disc, 80.0, Tissue.SOFT)
    yc = ry + 9.0
    rc = np.sqrt(Xs**2 + (Ys - yc) ** 2)
    arch = (phase > 6.0) & (phase < P.vertebra_pitch - 4.0)
    lamina = arch & (rc < 14.0) & (Ys > ry - 2.0)
    transverse = arch & (np.abs(Ys - yc + 2.0) < 4.0) & (np.abs(Xs) < 30.0)
    # the spinous process slopes down (towards the feet) as it runs backwards
    sp_phase = np.mod(z - P.apex_z - 0.6 * np.maximum(Ys - yc, 0.0), P.vertebra_pitch)
    spinous = (np.abs(Xs) < 4.0) & (Ys > yc) & (Ys < yc + 32.0) & (sp_phase > 8.0) & (sp_phase < 18.0)
    pe = lamina | spinous | transverse
    _set(hu, labels, pe, 0.55 * cortex_hu, Tissue.BONE)
    _set(hu, labels, (rc < 8.0) & (Ys > ry), 25.0, Tissue.SOFT)  # canal: cord and CSF
    # --- ribs: 12 pairs, z(psi) drops towards the front; cortex shell around marrow
    pitch = P.vertebra_pitch
    drop = P.rib_drop * (1.0 - np.cos(psi)) * 0.5
    u = (zz - (P.apex_z - 12.0) - drop) / pitch
    k = np.floor(u)
    hz = 7.0 * build
    in_z = (u - k) * pitch
    rib_end = 2.35 + 0.02 * k
    in_band = (depth > d_rib) & (depth < d_rib + rib_t)
    rib_zone = (k >= 0) & (k < 12) & (in_z < hz) & in_band & (psi > 0.3)
    rib = rib_zone & (psi < rib_end)
    edge = np.minimum(np.minimum(in_z, hz - in_z), np.minimum(depth - d_rib, d_rib + rib_t - depth))
    _set(hu, labels, rib, np.where(edge < 1.0, 1.1 * cortex_hu, 0.75 * medulla_hu).astype(np.float32), Tissue.BONE)
    cart = rib_zone & (psi >= rib_end) & (psi < 2.95) & (k < 7)
    _set(hu, labels, cart, 120.0, Tissue.SOFT)
    # --- sternum: anterior midline plate
    st_z = (zz > P.apex_z + 15.0) & (zz < L.heart_c[0] + 0.6 * L.heart_r[0])
    st = st_z & (np.abs(X) < 17.0) & (psi > 2.6) & (depth > d_rib) & (depth < d_rib + 11.0)
    st_edge = np.minimum(depth - d_rib, d_rib + 11.0 - depth)
    _set(hu, labels, st, np.where(st_edge < 1.8, cortex_hu, medulla_hu).astype(np.float32), Tissue.BONE)
    # --- scapulae: thin plates on the back of the ribs
    sc = (psi > 0.5) & (psi < 1.25) & (depth > d_rib - 7.0) & (depth < d_rib - 4.5)
    sc &= (zz > P.apex_z - 15.0) & (zz < P.apex_z + 150.0 - 60.0 * (psi - 0.5))
    _set(hu, labels, sc, 0.6 * cortex_hu, Tissue.BONE)


def _draw_mediastinum(hu: np.ndarray, labels: np.ndarray, grid: Grid, P: Patient, L: Landmarks) -> None:
    """Heart (pericardial fat, myocardium, blood pool) and the great vessels and airways."""
    w = grid.voxel_mm
    lo = L.heart_c - 1.15 * L.heart_r.max()
    hi = L.heart_c + 1.15 * L.heart_r.max()
    sl = grid.box(lo, hi)
    if sl is not None:
        z, y, x = grid.box_coords(sl)
        qh = _heart_q(z, y, x, L, P.heart_angle)
        r_mean = float(L.heart_r.mean())
        sub_h, sub_l = hu[sl], labels[sl]
        for scale, value, tissue in (
            (1.1, P.fat_hu + 10.0, Tissue.FAT),
            (1.0, P.muscle_hu, Tissue.HEART),
            (0.78, P.blood_hu, Tissue.HEART),
        ):
            occ = coverage((qh - scale) * r_mean, w)
            sub_h += occ * (np.float32(value) - sub_h)
            sub_l[occ > 0.5] = tissue
        # interventricular septum: a myocardial wall through the blood pool, along the long axis
        ca, sa = np.float32(np.cos(P.heart_angle)), np.float32(np.sin(P.heart_angle))
        v = (x - L.heart_c[2]) * sa + (y - L.heart_c[1]) * ca - np.float32(0.1 * L.heart_r[2])
        occ = coverage(np.abs(v) - 4.5, w) * coverage((qh - 0.8) * r_mean, w)
        sub_h += occ * (np.float32(P.muscle_hu) - sub_h)
    for p0, p1, r0, r1, kind in L.tubes:
        if kind in ("aorta", "pa", "vein"):
            _tube(hu, labels, grid, p0, p1, r0 + 2.5, r1 + 2.5, P.fat_hu + 10.0, Tissue.FAT)
    for p0, p1, r0, r1, kind in L.tubes:
        if kind in ("aorta", "pa", "vein"):
            _tube(hu, labels, grid, p0, p1, r0, r1, P.blood_hu, Tissue.GREAT_VESSEL)
        elif kind == "oesophagus":
            _tube(hu, labels, grid, p0, p1, r0, r1, P.muscle_hu - 5.0, Tissue.SOFT)
        else:
            _tube(hu, labels, grid, p0, p1, r0 + 2.0, r1 + 1.8, P.muscle_hu - 10.0, Tissue.SOFT)
    for p0, p1, r0, r1, kind in L.tubes:
        if kind in ("trachea", "bronchus"):
            _tube(hu, labels, grid, p0, p1, r0, r1, AIR_HU, Tissue.AIRWAY)
    # clavicles: from the top of the sternum out to the shoulders, just above the lung apices
    front = L.cy - 0.8 * P.half_depth
    for side in (-1.0, 1.0):
        p0 = np.array([P.apex_z - 5.0, front + 8.0, L.cx + side * 18.0])
        p1 = np.array([P.apex_z - 25.0, L.cy - 0.35 * P.half_depth, L.cx + side * 0.85 * P.half_width])
        _tube(hu, labels, grid, p0, p1, 6.0, 5.0, 600.0 * P.bone_scale, Tissue.BONE)


def _tube(hu: np.ndarray, labels: np.ndarray, grid: Grid, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float,
          value: float, tissue: Tissue, within: np.ndarray | None = None) -> None:
    w = grid.voxel_mm
    res = segment_distance(grid, p0.astype(np.float32), p1.astype(np.float32), r0, r1, w)
    if res is None:
        return
    sl, sd = res
    occ = coverage(sd, w)
    if within is not None:
        occ *= within[sl]
    sub = hu[sl]
    sub += occ * (np.float32(value) - sub)
    labels[sl][occ > 0.5] = tissue


def _lung_targets(rng: np.random.Generator, lung: np.ndarray, grid: Grid, side: np.ndarray, n: int) -> np.ndarray:
    """``n`` random points (mm) inside the lung occupancy on one side (``side``: (1,1,nx) bool)."""
    idx = np.flatnonzero((lung > 0.5) & side)
    if idx.size == 0:
        return np.zeros((0, 3))
    pick = rng.choice(idx, size=min(n, idx.size), replace=False)
    zyx = np.stack(np.unravel_index(pick, lung.shape), axis=1).astype(np.float64)
    jitter = rng.uniform(-0.5, 0.5, zyx.shape)
    sp = np.asarray(grid.spacing)
    off = np.array([0.0, grid.extent_zyx[1] / 2, grid.extent_zyx[2] / 2])
    return (zyx + 0.5 + jitter) * sp - off


def _draw_trees(hu: np.ndarray, labels: np.ndarray, lung: np.ndarray, grid: Grid, P: Patient, L: Landmarks,
                rng: np.random.Generator) -> None:
    """Artery, vein and bronchus trees in each lung."""
    x = grid.axis(2)[None, None, :]
    pa_ends = [t[1] for t in L.tubes if t[4] == "pa"][1:]  # left hilum, right hilum
    br_ends = [t[1] for t in L.tubes if t[4] == "bronchus"]  # right, left
    roots = {
        -1: (pa_ends[1], br_ends[0], np.array([L.carina[0] + 55.0, L.spine_y - 55.0, L.cx - 40.0])),
        1: (pa_ends[0], br_ends[1], np.array([L.carina[0] + 60.0, L.spine_y - 52.0, L.cx + 45.0])),
    }
    vessel_hu = P.blood_hu
    for sign, (art_root, br_root, vein_root) in roots.items():
        side = (x - L.cx) * sign > 0
        for root, n, r_root in ((art_root, 220, 5.2), (vein_root, 160, 5.5)):
            tg = _lung_targets(rng, lung, grid, side, n)
            if len(tg) < 2:
                continue
            for s in grow_tree(rng, root, tg, r_root):
                within = None if s.generation < 2 else lung
                _tube(hu, labels, grid, s.p0, s.p1, s.r0, s.r1, vessel_hu, Tissue.VESSEL, within)
        tg = _lung_targets(rng, lung, grid, side, 24)
        if len(tg) < 2:
            continue
        segs = [s for s in grow_tree(rng, br_root, tg, 6.0, step=0.5) if s.r1 >= 1.5]
        for s in segs:
            _tube(hu, labels, grid, s.p0, s.p1, s.r0 * 1.3 + 0.8, s.r1 * 1.3 + 0.8, P.muscle_hu - 20.0, Tissue.SOFT, lung)
        for s in segs:
            _tube(hu, labels, grid, s.p0, s.p1, s.r0, s.r1, AIR_HU, Tissue.AIRWAY, lung)


def _draw_table(hu: np.ndarray, labels: np.ndarray, y: np.ndarray, x: np.ndarray, P: Patient, L: Landmarks) -> None:
    """Curved carbon-fibre table top on foam, and a flat base, below the body (all z)."""
    top = L.y_back + P.table_gap + 0.0012 * (x - L.cx) ** 2
    wide = np.abs(x - L.cx) < 220.0
    shell = wide & (y >= top) & (y < top + 2.5)
    foam = wide & (y >= top + 2.5) & (y < top + 30.0)
    base = (np.abs(x - L.cx) < 190.0) & (y >= L.y_back + P.table_gap + 42.0) & (y < L.y_back + P.table_gap + 46.0)
    for mask, value in ((foam, -850.0), (shell, 250.0), (base, 150.0)):
        m2 = np.broadcast_to(mask, (1, *hu.shape[1:]))[0]
        hu[:, m2] = value
        labels[:, m2] = Tissue.TABLE
