"""Sampling trained generators into volume files (see :mod:`ctsgan.generation.generate`).

The names below load :mod:`~ctsgan.generation.generate` (and torch) on first use, so the file
writers' worker processes, which import only :mod:`ctsgan.generation.writer`, never import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctsgan.generation.generate import generate_volumes, load_generator, volume_name, volume_seed

__all__ = ["generate_volumes", "load_generator", "volume_name", "volume_seed"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ctsgan.generation import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'ctsgan.generation' has no attribute {name!r}")
