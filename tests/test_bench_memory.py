"""`ctsgan bench memory` (ctsgan.bench.memory): fresh-subprocess peaks, JSON keys, 'does not fit'."""

from __future__ import annotations

import pytest

from ctsgan.bench.memory import MemoryCase, Widths, measure_in_subprocess, parse_bytes

TINY = Widths(2, 2, 8)


def test_parse_bytes_and_widths_by_hand() -> None:
    assert parse_bytes("8G") == 8 * 2**30
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5g") == 3 * 2**29
    assert parse_bytes("1000") == 1000
    assert parse_bytes("none") is None
    with pytest.raises(ValueError, match="memory limit"):
        parse_bytes("lots")
    assert Widths.parse("16") == Widths(16, 16, 256)
    assert Widths.parse("8,32") == Widths(8, 32, 256)
    assert Widths.parse("8,32,64") == Widths(8, 32, 64)
    assert Widths.parse("512") == Widths(512, 512, 512)
    with pytest.raises(ValueError, match="widths"):
        Widths.parse("8,x")
    with pytest.raises(ValueError, match="below"):
        Widths.parse("64,64,32")


def test_too_small_limit_is_reported_not_raised() -> None:
    case = MemoryCase("gan3d", "gan3d", 32, None, "cpu", TINY, memory_limit_bytes=2**20)
    result = measure_in_subprocess(case, timeout_s=120)
    assert not result.fits
    assert result.peak_bytes is None and result.step_seconds is None
    assert result.reason is not None and result.reason.startswith("does not fit")
