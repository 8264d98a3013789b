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
    half_width = 130.0 + 30.0 * size + 10.0 * fat
    half_depth = 90.0 + 20.0 * size + 10.0 * fat + u(-4, 4)
    build = (half_width / 150.0 + half_depth / 105.0) / 2.0  # organs scale with the body
    enhance = u(0.0, 1.0)  # contrast phase: 0 = late venous .. 1 = arterial
    apex_z = u(25.0, 40.0)  # shoulders and the root of the neck above the lung apices
    dome_right_z = apex_z + u(160.0, 190.0) * build
    dome_left_offset = u(8.0, 22.0)
    dome_height = u(35.0, 50.0)
    # the scan covers the lungs and the upper abdomen below the left dome
    fov_z = float(np.clip(dome_right_z + dome_left_offset + u(55.0, 85.0) * build, 250.0, 340.0))
    return Patient(
        fov_xy=float(np.clip(2 * half_width + u(40, 80), 340.0, 420.0)),
        fov_z=fov_z,
        half_width=half_width,
        half_depth=half_depth,
        body_shift_x=u(-12.0, 12.0),
        shape_power=u(2.1, 2.6),
        fat_mm=6.5 + 5.5 * fat + u(-1.0, 1.0),
        muscle_mm=u(10.0, 12.0) * build,
        table_gap=u(6.0, 14.0),
        apex_z=apex_z,
        dome_right_z=dome_right_z,
        dome_left_offset=dome_left_offset,
        dome_height=dome_height,
        mediastinum_half=u(16.0, 21.0) * build,
        heart_scale=u(0.92, 1.08) * build,
        heart_angle=np.deg2rad(u(30.0, 50.0)),
        spine_depth=(u(55.0, 70.0) + 0.6 * (6.5 + 5.5 * fat)) * build,
        vertebra_pitch=u(22.0, 27.0),
        rib_drop=u(45.0, 75.0),
        fat_hu=u(-116.0, -106.0),
        muscle_hu=u(42.0, 55.0),
        lung_hu=u(-905.0, -860.0),
        lung_gradient=u(15.0, 45.0),
        blood_hu=110.0 + 90.0 * enhance + u(-10, 10),
        liver_hu=95.0 - 20.0 * enhance + u(-5, 5),
        bone_scale=u(0.95, 1.05),
        noise_hu=u(8.0, 22.0),
        noise_corr_mm=u(0.6, 1.4),
        blur_mm=u(0.5, 1.0),
        hu_offset=u(-4.0, 4.0),
    )
