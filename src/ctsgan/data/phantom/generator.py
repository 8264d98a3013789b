"""``make_phantom``: one procedural chest CT (HU) with its ground truth."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ctsgan.data.dataset import NoduleSpec
from ctsgan.data.phantom.anatomy import Tissue, draw_anatomy
from ctsgan.data.phantom.grid import Grid
from ctsgan.data.phantom.nodules import LognormalNoduleStats, NoduleStats, draw_nodule, place_nodules
from ctsgan.data.phantom.patient import Patient, sample_patient
from ctsgan.data.phantom.scanner import block_mean, blur, scanner_noise, to_hu_int16

MIN_SIZE = 16
FINE_MIN = 96  # small volumes are drawn at >= this many voxels per edge (at most 4x), then block-averaged
MAX_FACTOR = 4

SeedLike = int | Sequence[int] | np.random.SeedSequence

# the image direction of written volumes: x, y as in DICOM LPS, z index running head -> feet
DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class Phantom:
    """One phantom chest CT.

    Attributes:
        hu: int16 (z, y, x) HU, shape (size, size, size); z runs head -> feet.
        spacing_zyx: voxel size (z, y, x) in mm.
        lung_mask: bool (z, y, x): both lungs (vessels, small airways and nodules inside count).
        healthy: int16 (z, y, x): the same volume without nodules (same noise); == hu without nodules.
        nodule_mask: bool (z, y, x): voxels at least half covered by a nodule (and each centre voxel).
        nodules: (centre (z, y, x) in voxel indices, diameter in mm) per nodule.
        origin_zyx: world position (LPS mm, (z, y, x)) of voxel (0, 0, 0); the image direction is
            :data:`DIRECTION` (world z = origin_z - index_z * spacing_z).
        labels: uint8 (z, y, x) :class:`Tissue` map of ``hu``.
        patient: the drawn anatomy and scanner parameters.
    """

    hu: np.ndarray
    spacing_zyx: tuple[float, float, float]
    lung_mask: np.ndarray
    healthy: np.ndarray
    nodule_mask: np.ndarray
    nodules: list[NoduleSpec]
    origin_zyx: tuple[float, float, float] = (0.0, 0.0, 0.0)
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    patient: Patient | None = None

    def voxel_to_world(self, zyx: Sequence[float]) -> tuple[float, float, float]:
        """Continuous voxel index (z, y, x) -> world LPS (x, y, z) mm, as in the written NIfTI."""
        oz, oy, ox = self.origin_zyx
        sz, sy, sx = self.spacing_zyx
        return (ox + zyx[2] * sx, oy + zyx[1] * sy, oz - zyx[0] * sz)


def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, int | np.integer):
        return np.random.SeedSequence(int(seed))
    return np.random.SeedSequence([int(s) for s in seed])


def make_phantom(
    size: int, seed: SeedLike, nodules: bool = False, nodule_stats: NoduleStats | None = None
) -> Phantom:
    """Make one phantom chest CT of shape (size, size, size).

    Args:
        size: cube edge S (>= 16); the field of view is 340-420 mm in-plane and 250-340 mm
            in z (lungs and upper abdomen, scaled with the patient), so the spacing is about
            (290/S, 370/S, 370/S) mm.
        seed: an int, a sequence of ints (``write_phantoms`` uses ``(seed, i)``) or a SeedSequence;
            the same seed gives a bit-identical phantom.
        nodules: add nodules inside the lungs (sizes and count from ``nodule_stats``).
        nodule_stats: where nodule diameters and counts come from; default
            :class:`LognormalNoduleStats` (pass ``ctsgan.nodules.lidc_stats.load_lidc_stats()`` for LIDC's).

    Returns:
        The :class:`Phantom`.
    """
    if not isinstance(size, int | np.integer) or size < MIN_SIZE:
        raise ValueError(f"phantom size must be an integer >= {MIN_SIZE}, got {size!r}")
    size = int(size)
    ss = _seed_sequence(seed)
    rng_patient, rng_anatomy, rng_nodules, rng_noise = (np.random.default_rng(s) for s in ss.spawn(4))
    P = sample_patient(rng_patient)
    factor = min(MAX_FACTOR, math.ceil(FINE_MIN / size)) if size < FINE_MIN else 1
    extent = (P.fov_z, P.fov_xy, P.fov_xy)
    fine = Grid((size * factor,) * 3, extent)
    out = Grid((size,) * 3, extent)
    hu_fine, lung_fine, labels_fine, _ = draw_anatomy(fine, P, rng_anatomy)

    noise = scanner_noise(rng_noise, out.shape, out.spacing, P.noise_hu, P.noise_corr_mm)

    def scan(clean: np.ndarray) -> np.ndarray:
        return to_hu_int16(blur(block_mean(clean, factor), out.spacing, P.blur_mm) + noise + np.float32(P.hu_offset))

    healthy = scan(hu_fine)
    lung_mask = block_mean(lung_fine, factor) >= 0.5
    c = factor // 2
    labels = np.ascontiguousarray(labels_fine[c::factor, c::factor, c::factor])
    nodule_mask = np.zeros(out.shape, dtype=bool)
    found: list[NoduleSpec] = []
    hu = healthy.copy()  # separate arrays: editing one never changes the other
    if nodules:
        stats = nodule_stats if nodule_stats is not None else LognormalNoduleStats()
        count = max(0, int(stats.sample_count(rng_nodules)))
        diam = np.asarray(stats.sample_diameters_mm(rng_nodules, count), dtype=float) if count else np.zeros(0)
        placed = place_nodules(rng_nodules, lung_fine, fine, diam) if count else []
        if placed:
            occ_fine = np.zeros(fine.shape, dtype=np.float32)
            with_nod = hu_fine.copy()
            for centre, d in placed:
                draw_nodule(with_nod, occ_fine, fine, centre, d, rng_nodules)
            hu = scan(with_nod)
            nodule_mask = block_mean(occ_fine, factor) >= 0.5
            for centre, d in placed:
                idx = out.to_index(centre)
                nodule_mask[tuple(np.clip(np.rint(idx).astype(int), 0, size - 1))] = True
                found.append(((float(idx[0]), float(idx[1]), float(idx[2])), float(d)))
            labels[nodule_mask] = Tissue.NODULE
    sp = out.spacing
    origin = (P.fov_z / 2 - sp[0] / 2, -P.fov_xy / 2 + sp[1] / 2, -P.fov_xy / 2 + sp[2] / 2)
    return Phantom(
        hu=hu, spacing_zyx=sp, lung_mask=lung_mask, healthy=healthy, nodule_mask=nodule_mask, nodules=found,
        origin_zyx=origin, labels=labels, patient=P,
    )
