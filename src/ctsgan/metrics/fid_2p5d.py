"""2.5D FID: FID of whole sets in the axial, coronal and sagittal planes (MAISI's way).

Every volume of a set gives 2-D slices in the three planes; each plane's slices of all real
volumes form one feature set, and likewise for the generated volumes. The FID of each plane is
computed between the two whole sets, and the 2.5D FID is the mean of the three (as MAISI
reports xy / yz / zx FIDs and their average).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np

from ctsgan.metrics.fid import frechet_distance


class Plane(StrEnum):
    """Slice planes of a (z, y, x) volume; the value's axis is :data:`PLANE_AXIS`."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


PLANE_AXIS = {Plane.AXIAL: 0, Plane.CORONAL: 1, Plane.SAGITTAL: 2}


def fid_2p5d(real: Mapping[Plane, np.ndarray], fake: Mapping[Plane, np.ndarray]) -> dict[str, float]:
    """Per-plane FIDs and their mean.

    Args:
        real: plane -> (N_real_slices, F) features of all real volumes' slices in that plane.
        fake: plane -> (N_fake_slices, F) the same for the generated volumes.

    Returns:
        ``{"fid_2p5d": mean, "fid_2p5d_axial": ..., "fid_2p5d_coronal": ..., "fid_2p5d_sagittal": ...}``.
    """
    out: dict[str, float] = {}
    for plane in Plane:
        if plane not in real or plane not in fake:
            raise ValueError(f"2.5D FID needs features of every plane; missing {plane.value!r}")
        out[f"fid_2p5d_{plane.value}"] = frechet_distance(real[plane], fake[plane])
    out["fid_2p5d"] = float(np.mean([out[f"fid_2p5d_{p.value}"] for p in Plane]))
    return out
