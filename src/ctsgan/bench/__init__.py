"""Benchmarks behind `ctsgan bench ...` (library functions; the commands only print)."""
