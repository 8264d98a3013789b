"""ctsgan: synthetic 3D chest CT (CT-SGAN, arXiv 2110.09288) as a research tool."""

from __future__ import annotations

__version__ = "0.1.0"
