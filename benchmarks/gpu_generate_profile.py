"""Where batched 224^3 generation spends its GPU time: issue 14's 1000 volumes/s target.

The first H200 run (docs/results/gpu_h200/gpu_issue14_2026-11-30.jsonl) measured 17.7 ms per
224^3 volume in bf16 (24 TFLOP/s, 3 % of the 8192^3 matmul) and 36-53 volumes/s batched: batching
did not help, so G_slice itself, not R_v's 222 sequential steps, is what is slow. This script
times the pieces apart, each one JSON line (``OUT/gpu_generate_profile.jsonl``):

- ``g_slice_chunk{C}``: one G_slice call on C codes (bf16 autocast, channels-last weights, BatchNorm
  folded: what ``generate`` runs), ms per 3-slice and TFLOP/s, for C in 128 / 512 / 2048;
- ``g_slice_bf16_weights``: the same with the weights stored in bf16 and no autocast;
- ``g_slice_nchw``: with contiguous (NCHW) weights;
- ``g_slice_as_defined``: G_slice as trained (BatchNorm, upsampling + 3x3 convolutions), beside the
  inference copy (BatchNorm folded, each resize pair one transposed convolution);
- ``g_slice_layers``: each layer of G_slice timed alone at chunk 512 (where the time goes);
- ``codes_batch{B}``: R_v (the LSTM) + code assembly for B volumes;
- ``render_batch16``: ``render_volumes`` for 16 volumes, and the device-to-host HU conversion;
- ``profile``: torch.profiler's 25 costliest kernels of one chunk-512 call (also ``OUT/profile.txt``);
- ``g_slice_compiled``: ``torch.compile`` of G_slice (inductor, frozen weights), compile seconds
  and ms per 3-slice (last: it takes the longest).

Usage (repo root): ``PYTHONPATH=src python benchmarks/gpu_generate_profile.py OUT``;
``GPU_PROFILE_DEVICE=cpu`` runs it at toy sizes (the smoke test keeps it working between GPU
sessions). On the H200 it needs the ``.whl`` wheels of benchmarks/gpu_issue14.py and no Inception::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src:benchmarks PYTHONUNBUFFERED=1 && \
      python3 benchmarks/gpu_generate_profile.py $OUT
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from gpu_issue14 import run_parts
from torch.utils.flop_counter import FlopCounterMode

from ctsgan.generation.generate import unit_to_hu_array
from ctsgan.training.recipes import get_recipe
from ctsgan.training.recipes.ctsgan import render_volumes

DEVICE = os.environ.get("GPU_PROFILE_DEVICE", "cuda")
SMOKE = DEVICE == "cpu"
SIZE = 32 if SMOKE else 224
CHUNKS = (4, 8) if SMOKE else (128, 512, 2048)
MID = CHUNKS[-2]  # the chunk the single-variant parts use
RENDER_BATCH = 2 if SMOKE else 16


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], Any], warmup: int = 2, repeats: int = 5) -> float:
    """Median wall seconds of ``fn`` (device synchronised) after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def setup() -> tuple[Any, Any]:
    """(config, generator) as ``bench generate`` builds them: paper224 widths, BatchNorm folded,
    channels-last weights, eval mode, on DEVICE."""
    recipe = get_recipe("ctsgan")
    config, _ = recipe.bench_setup(SIZE)
    torch.manual_seed(0)
    gen = recipe.inference_generator(recipe.build_networks(config).generator.eval()).to(DEVICE)
    if DEVICE == "cuda":
        torch.backends.cudnn.benchmark = True
    return config, gen.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def gflop_per_call(module: Any, code: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        module(code.float())
    return fc.get_total_flops() / 1e9


def time_g_slice(module: Any, n: int, autocast: bool = True, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """ms per 3-slice and TFLOP/s of one call on ``n`` codes."""
    code = torch.randn(n, module.code_dim, device=DEVICE, dtype=dtype)
    gflop = gflop_per_call(copy.deepcopy(module).float(), code[:1]) * n

    def call() -> None:
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast and not SMOKE):
            module(code)

    s = median_seconds(call)
    return {"chunk": n, "ms_per_call": s * 1e3, "ms_per_3slice": s * 1e3 / n, "tflops": gflop / s / 1e3,
            "ms_per_volume_equiv": s * 1e3 / n * (SIZE - 2)}


def layers(module: Any, n: int) -> list[dict[str, Any]]:
    """Each layer of G_slice's ``main`` timed alone on its real input (bf16 autocast)."""
    x = torch.randn(n, module.code_dim, device=DEVICE)[:, :, None, None]
    out = []
    with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not SMOKE):
        for i, layer in enumerate(module.main):
            inp = x
            s = median_seconds(partial(layer, inp), warmup=2, repeats=5)
            x = layer(inp)
            out.append({"i": i, "layer": repr(layer)[:80], "in": list(inp.shape), "out": list(x.shape),
                        "in_channels_last": inp.is_contiguous(memory_format=torch.channels_last),
                        "dtype": str(x.dtype), "ms": s * 1e3})
    return out


def codes_part(gen: Any, batch: int) -> dict[str, Any]:
    length = SIZE - 2
    patient = torch.randn(batch, gen.patient_dim, device=DEVICE)
    eps = torch.randn(batch, length, gen.noise_dim, device=DEVICE)
    h0 = torch.randn(2, batch, gen.rnn_hidden, device=DEVICE)

    def call() -> None:
        with torch.inference_mode():
            gen.codes(patient, eps, h0)

    s = median_seconds(call)
    return {"batch": batch, "ms_per_call": s * 1e3, "ms_per_volume": s * 1e3 / batch}


def render_part(config: Any, gen: Any) -> dict[str, Any]:
    noises = lambda: [torch.Generator().manual_seed(i) for i in range(RENDER_BATCH)]  # noqa: E731
    render = lambda: render_volumes(gen, SIZE, noises(), torch.device(DEVICE), dtype=torch.bfloat16 if not SMOKE else torch.float32, chunk=MID)  # noqa: E731
    s = median_seconds(render, warmup=1, repeats=3)
    vols = render()
    lo, hi = config.hu_window
    to_host = median_seconds(lambda: [unit_to_hu_array(v, lo, hi, config.hu_knots) for v in vols], warmup=1, repeats=3)
    return {"batch": RENDER_BATCH, "chunk": MID, "ms_per_volume": s * 1e3 / RENDER_BATCH,
            "to_host_ms_per_volume": to_host * 1e3 / RENDER_BATCH}


def profile_part(module: Any, out_dir: Path) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    code = codes_for_module(module, MID)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not SMOKE):
        for _ in range(2):
            module(code)
        _sync()
        with profile(activities=acts) as prof:
            for _ in range(3):
                module(code)
            _sync()
    key = "self_cuda_time_total" if DEVICE == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=90)
    (out_dir / "profile.txt").write_text(table)
    print(table, flush=True)
    return {"table_lines": table.splitlines()[:40]}


def codes_for_module(module: Any, n: int) -> torch.Tensor:
    return torch.randn(n, module.code_dim, device=DEVICE)


def compiled_part(module: Any) -> dict[str, Any]:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    fast = torch.compile(copy.deepcopy(module), dynamic=False)
    code = codes_for_module(module, MID)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not SMOKE):
        fast(code)
    _sync()
    compile_s = time.perf_counter() - t0
    res = time_g_slice(fast, MID)  # type: ignore[arg-type]
    return {"compile_seconds": compile_s, **res}


def parts(out_dir: Path) -> list[tuple[str, Callable[[], Any]]]:
    config, gen = setup()
    g = gen.g_slice
    todo: list[tuple[str, Callable[[], Any]]] = [(f"g_slice_chunk{c}", partial(time_g_slice, g, c)) for c in CHUNKS]
    bf16 = copy.deepcopy(g).to(torch.bfloat16 if not SMOKE else torch.float32)
    todo.append(("g_slice_bf16_weights", partial(time_g_slice, bf16, MID, False, torch.bfloat16 if not SMOKE else torch.float32)))
    nchw = copy.deepcopy(g).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    todo.append(("g_slice_nchw", partial(time_g_slice, nchw, MID)))
    # side by side: G_slice as trained (BatchNorm, nearest doubling + 3x3 convolutions)
    recipe = get_recipe("ctsgan")
    torch.manual_seed(0)
    defined = recipe.build_networks(config).generator.eval().g_slice.to(DEVICE).to(memory_format=torch.channels_last)
    todo.append(("g_slice_as_defined", partial(time_g_slice, defined, MID)))
    todo.append(("g_slice_layers", partial(layers, g, MID)))
    todo += [(f"codes_batch{b}", partial(codes_part, gen, b)) for b in (1, 64)]
    todo.append((f"render_batch{RENDER_BATCH}", partial(render_part, config, gen)))
    todo.append(("profile", partial(profile_part, g, out_dir)))
    todo.append(("g_slice_compiled", partial(compiled_part, g)))
    return todo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", default=None, help="comma-separated part names")
    args = ap.parse_args()
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (GPU_PROFILE_DEVICE=cpu runs the CPU smoke version)")
    args.out.mkdir(parents=True, exist_ok=True)
    run_parts(args.out / "gpu_generate_profile.jsonl", parts(args.out), set(args.only.split(",")) if args.only else None, SMOKE)


if __name__ == "__main__":
    main()
