"""`ctsgan bench memory` (ctsgan.bench.memory): fresh-subprocess peaks, JSON keys, 'does not fit'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctsgan.bench.dataset import write_bench_dataset
from ctsgan.bench.memory import MemoryCase, Widths, measure_in_subprocess, parse_bytes
from ctsgan.cli import app

TINY = Widths(2, 2, 8)


def test_parse_bytes_and_widths_by_hand() -> None:
    assert parse_bytes("8G") == 8 * 2**30
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5g") == 3 * 2**29
    assert parse_bytes("1000") == 1000
    assert parse_bytes("none") is None
    with pytest.raises(ValueError, match="memory limit"):
        parse_bytes("lots")
    assert Widths.parse("16") == Widths(16, 16, 512)
    assert Widths.parse("8,32") == Widths(8, 32, 512)
    assert Widths.parse("8,32,64") == Widths(8, 32, 64)
    assert Widths.parse("1024") == Widths(1024, 1024, 1024)
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


def test_cli_json_keys_positive_peaks_and_growth_with_size() -> None:
    """The real benchmark on tiny widths: every key there, peaks > 0, and the 3D GAN at 128^3
    needs more memory than at 16^3 (its activations are whole cubes)."""
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "memory", "--size", "16", "--widths", "2,2,8", "--json", "--timeout", "300", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    summary = {k: v for k, v in report.items() if k != "cases"}
    for key in (
        "ctsgan_peak_bytes", "gan3d_peak_bytes", "gan3d_128_peak_bytes", "ctsgan_2x_slices_peak_bytes",
        "ctsgan_step_seconds", "gan3d_step_seconds", "gan3d_128_step_seconds", "ctsgan_2x_slices_step_seconds",
        "memory_ratio", "memory_ratio_128", "slices_2x_ratio", "widths", "device", "peak_measure",
    ):
        assert key in report, key
    assert report["widths"] == {"g_base": 2, "d_base": 2, "max_channels": 8}
    for label in ("ctsgan", "ctsgan_2x_slices", "gan3d", "gan3d_128"):
        assert report[f"{label}_reason"] is None, report[f"{label}_reason"]
        assert report[f"{label}_peak_bytes"] > 0, summary
        assert report[f"{label}_step_seconds"] > 0, summary
    assert report["gan3d_128_peak_bytes"] > report["gan3d_peak_bytes"], summary
    assert report["memory_ratio"] == report["gan3d_peak_bytes"] / report["ctsgan_peak_bytes"]


def test_a_configuration_past_its_time_limit_is_reported() -> None:
    case = MemoryCase("gan3d", "gan3d", 16, None, "cpu", TINY)
    result = measure_in_subprocess(case, timeout_s=0.01)
    assert not result.fits and result.peak_bytes is None
    assert result.reason is not None and "time limit" in result.reason


def test_ctsgan_trains_on_volumes_deeper_than_wide(tmp_path: Path) -> None:
    """CT-SGAN's optional ``slices`` (training depth L, used for the 2S case): R_v and D_slice's
    position table cover L - 2 positions, a step runs, and data of another depth is refused."""
    import torch

    from ctsgan.training import train
    from ctsgan.training.checkpoint import load_checkpoint
    from training_helpers import tiny_config

    data = write_bench_dataset(tmp_path / "deep", size=16, depth=32)
    cfg = tiny_config("ctsgan", slices=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ckpt = load_checkpoint(train("ctsgan", cfg, data, tmp_path / "run", steps=1, progress=False))
        assert ckpt["discriminator"]["d_slice.embed.weight"].shape[0] == 30
        with pytest.raises(ValueError, match="32 slices but config slices is 16"):
            train("ctsgan", tiny_config("ctsgan"), data, tmp_path / "run16", steps=1, progress=False)
    finally:
        torch.set_num_threads(threads)
