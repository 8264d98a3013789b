"""`ctsgan bench train`: the JSON keys, counted FLOPs that grow with the model, a profile of every part."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ctsgan.bench.train import PARTS, bench_train
from training_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_train_counts_more_flops_for_a_bigger_preset() -> None:
    tiny = bench_train(config="tiny", steps=2, warmup=1, matmul_size=256)
    big = bench_train(config="paper", steps=1, warmup=0, matmul_size=256)
    for r in (tiny, big):
        assert r["steps_per_second"] > 0 and r["gflop_per_step"] > 0 and r["matmul_gflops"] > 0
        assert r["achieved_gflops"] == pytest.approx(r["gflop_per_step"] * r["steps_per_second"])
        assert set(r["profile"]) == set(PARTS)
        assert r["profile"]["d_forward"] > 0 and r["profile"]["g_backward_step"] > 0
        # CPU: the process's peak RSS over the timed steps; torch alone holds well over 50 MiB
        assert r["peak_memory_kind"] == "process_peak_rss" and r["peak_memory_bytes"] > 50 * 2**20
    # 64^3 slices and wider networks: far more arithmetic per step than the 16^3 tiny preset
    assert big["gflop_per_step"] > 20 * tiny["gflop_per_step"]


def test_bench_train_cli_json_and_bad_steps() -> None:
    from ctsgan.cli import app

    res = CliRunner().invoke(app, ["bench", "train", "--config", "tiny", "--steps", "1", "--warmup", "0", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("steps_per_second", "gflop_per_step", "achieved_gflops", "matmul_gflops", "efficiency", "profile", "peak_memory_bytes"):
        assert key in out
    bad = CliRunner().invoke(app, ["bench", "train", "--config", "tiny", "--steps", "0"])
    assert bad.exit_code == 1 and "steps must be >= 1" in bad.output
