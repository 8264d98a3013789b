"""Benchmarks that the ``ctsgan bench`` commands print (memory of one training step, ...)."""
