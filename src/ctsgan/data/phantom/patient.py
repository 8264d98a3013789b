"""Random patient and scanner parameters of one phantom.

Every number is in mm or HU. Ranges follow adult chest CT (arms raised, supine on the table):
chest half-width 125-170 mm, half-depth 85-120 mm, subcutaneous fat 4-30 mm, lungs from the
apex (near the top of the volume) to the diaphragm domes (right dome higher than the left).
The "scanner" part (noise level and texture, blur, contrast enhancement of blood, a small
calibration offset) is the domain that differs between sites.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Patient:
    """Anatomy and scanner parameters of one phantom (mm, HU)."""

    # field of view
    fov_xy: float
    fov_z: float
    # body outline
    half_width: float
    half_depth: float
    body_shift_x: float
    shape_power: float
    fat_mm: float
    muscle_mm: float
    table_gap: float
    # thorax
    apex_z: float
    dome_right_z: float
    dome_left_offset: float
    dome_height: float
    mediastinum_half: float
    heart_scale: float
    heart_angle: float
    spine_depth: float
    vertebra_pitch: float
    rib_drop: float
    # tissue HU
    fat_hu: float
    muscle_hu: float
    lung_hu: float
    lung_gradient: float
    blood_hu: float
    liver_hu: float
    bone_scale: float
    # scanner
    noise_hu: float
    noise_corr_mm: float
    blur_mm: float
    hu_offset: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw one patient (anatomy) and scanner (domain) from ``rng``."""
    u = rng.uniform
    size = u(0.0, 1.0)  # overall build: small .. large
    fat = u(0.0, 1.0)  # leanness .. adiposity
    half_width = 125.0 + 35.0 * size + 12.0 * fat
    half_depth = 85.0 + 22.0 * size + 14.0 * fat + u(-5, 5)
    contrast = rng.uniform() < 0.6
    return Patient(
        fov_xy=float(np.clip(2 * half_width + u(40, 80), 340.0, 420.0)),
        fov_z=u(280.0, 320.0),
        half_width=half_width,
        half_depth=half_depth,
        body_shift_x=u(-12.0, 12.0),
        shape_power=u(2.1, 2.6),
        fat_mm=4.0 + 24.0 * fat + u(-2, 2),
        muscle_mm=u(7.0, 14.0),
        table_gap=u(6.0, 14.0),
        apex_z=u(8.0, 30.0),
        dome_right_z=u(175.0, 215.0),
        dome_left_offset=u(8.0, 25.0),
        dome_height=u(35.0, 55.0),
        mediastinum_half=u(14.0, 22.0),
        heart_scale=u(0.88, 1.12),
        heart_angle=np.deg2rad(u(30.0, 50.0)),
        spine_depth=u(55.0, 70.0) + 0.6 * (4.0 + 24.0 * fat),
        vertebra_pitch=u(22.0, 27.0),
        rib_drop=u(45.0, 75.0),
        fat_hu=u(-115.0, -90.0),
        muscle_hu=u(40.0, 60.0),
        lung_hu=u(-905.0, -860.0),
        lung_gradient=u(15.0, 45.0),
        blood_hu=u(140.0, 260.0) if contrast else u(35.0, 50.0),
        liver_hu=u(90.0, 120.0) if contrast else u(50.0, 65.0),
        bone_scale=u(0.85, 1.15),
        noise_hu=u(10.0, 35.0),
        noise_corr_mm=u(0.6, 1.4),
        blur_mm=u(0.5, 1.0),
        hu_offset=u(-8.0, 8.0),
    )
