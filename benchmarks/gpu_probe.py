"""GPU probe for `ctsgan bench generate`: where does generation time go on a GPU?

Times, for the paper224 CT-SGAN generator at 224^3: the 2D generator alone over all 222
3-slices (no host copy) for several chunk sizes, the end-to-end `sample_volume` (volume on the
host), and the official `bench_generate` results (fp32, tf32, bf16; naive and optimized).
Prints one JSON object per line. Usage: python benchmarks/gpu_probe.py [--compile]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

from ctsgan.bench.generate import bench_generate
from ctsgan.training.recipes import get_recipe

DEVICE = os.environ.get("PROBE_DEVICE", "cuda")  # cpu: a quick local smoke run of this script
SIZE = int(os.environ.get("PROBE_SIZE", "224"))


def gen_only(dtype: torch.dtype, chunk: int, compile: bool) -> dict:
    recipe = get_recipe("ctsgan")
    cfg, _ = recipe.bench_setup(SIZE)
    dev = torch.device(DEVICE)
    g = recipe.inference_generator(recipe.build_networks(cfg).generator.eval()).to(dev)
    g = g.to(memory_format=torch.channels_last)
    gs = torch.compile(g.g_slice, dynamic=False) if compile else g.g_slice
    n = SIZE - 2
    codes = torch.randn(n, cfg.patient_dim + cfg.slice_dim, device=dev)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=dtype, enabled=dtype != torch.float32):
            for i in range(0, n, chunk):
                gs(codes[i : i + chunk])

    for _ in range(3):
        run()
    ts = []
    for _ in range(10):
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        run()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    sec = statistics.median(ts)
    return {"probe": "g_slice_only", "dtype": str(dtype), "chunk": chunk, "compile": compile, "seconds": sec,
            "gflops": 0.867 * n * (SIZE / 224) ** 2 / sec}


def parts(dtype: torch.dtype) -> dict:
    """Time R_v (the BiLSTM over 222 positions) and the host copies on their own."""
    recipe = get_recipe("ctsgan")
    cfg, _ = recipe.bench_setup(SIZE)
    dev = torch.device(DEVICE)
    g = recipe.build_networks(cfg).generator.eval().to(dev)
    n = SIZE - 2
    p = torch.randn(1, cfg.patient_dim, device=dev)
    e = torch.randn(1, n, cfg.noise_dim, device=dev)
    h = torch.randn(2, 1, cfg.rnn_hidden, device=dev)

    def codes() -> None:
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=dtype, enabled=dtype != torch.float32):
            g.codes(p, e, h)

    g_cpu = recipe.build_networks(cfg).generator.eval()
    pc, ec, hc = p.cpu(), e.cpu(), h.cpu()

    def codes_cpu() -> None:
        with torch.inference_mode():
            g_cpu.codes(pc, ec, hc)

    vol = torch.randn(SIZE, SIZE, SIZE, device=dev)
    out = {"probe": "parts", "dtype": str(dtype)}
    for name, fn in (("codes_s", codes), ("codes_on_cpu_s", codes_cpu), ("d2h_float32_s", lambda: vol.cpu()),
                     ("d2h_int16_s", lambda: vol.to(torch.int16).cpu())):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(10):
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        out[name] = statistics.median(ts)
    return out


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    do_compile = "--compile" in sys.argv
    for dtype in (torch.bfloat16, torch.float32):
        print(json.dumps(parts(dtype)), flush=True)
        for chunk in (74, 222):
            print(json.dumps(gen_only(dtype, chunk, False)), flush=True)
    for kw in (
        dict(dtype="bf16"), dict(dtype="fp32"), dict(dtype="tf32"), dict(dtype="bf16", naive=True),
        dict(dtype="fp32", naive=True),
    ):
        if DEVICE == "cpu" and kw["dtype"] == "tf32":
            continue
        r = bench_generate(size=SIZE, device=DEVICE, repeats=5 if DEVICE == "cuda" else 1, **kw)  # type: ignore[arg-type]
        print(json.dumps(r), flush=True)
    if do_compile:
        print(json.dumps(gen_only(torch.bfloat16, 111, True)), flush=True)
        print(json.dumps(bench_generate(size=SIZE, device=DEVICE, dtype="bf16", repeats=5, compile=True)), flush=True)


if __name__ == "__main__":
    main()
