"""The built-in chest CT phantom: procedural 3D chest CTs in HU, optionally with lung nodules.

Public API (docs/phantom.md): :func:`make_phantom`, :func:`write_phantoms`, :class:`Phantom`.
See docs/phantom.md.
"""

from __future__ import annotations

from ctsgan.data.phantom.anatomy import Tissue
from ctsgan.data.phantom.generator import DIRECTION, Phantom, make_phantom
from ctsgan.data.phantom.nodules import LognormalNoduleStats, NoduleStats
from ctsgan.data.phantom.patient import Patient, sample_patient
from ctsgan.data.phantom.writer import ANNOTATION_COLUMNS, phantom_id, write_phantoms

__all__ = [
    "ANNOTATION_COLUMNS",
    "DIRECTION",
    "LognormalNoduleStats",
    "NoduleStats",
    "Patient",
    "Phantom",
    "Tissue",
    "make_phantom",
    "phantom_id",
    "sample_patient",
    "write_phantoms",
]
