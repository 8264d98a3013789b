"""Sampling trained generators into volume files (see :mod:`ctsgan.generation.generate`)."""

from ctsgan.generation.generate import generate_volumes, load_generator, volume_name, volume_seed

__all__ = ["generate_volumes", "load_generator", "volume_name", "volume_seed"]
