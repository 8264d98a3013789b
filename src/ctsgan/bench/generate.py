"""Generation speed benchmark: seconds, memory, counted FLOPs and efficiency vs a matmul.

``efficiency`` = achieved GFLOP/s of volume generation / GFLOP/s of a large matmul timed in the
same process with the same dtype and threads: the generator is compute-bound, so 1 is the
practical ceiling on a given machine. Achieved GFLOP/s counts the arithmetic that runs
(``gflop_per_volume_executed``: the inference generator's); ``gflop_per_volume`` is the trained
module's forward. For CT-SGAN both run each resize layer as the equal transposed convolution
(192.6 GFLOP per 224^3 volume; 431.4 when the doubling and the 3x3 convolution ran apart).

``seconds_per_volume`` is the time until a volume is complete on the compute device (the
generator's work; on CPU that is host memory); ``seconds_per_volume_to_host`` adds the
conversion to int16 HU and the copy to host memory, as ``ctsgan generate`` does before writing.

Two paths are timed with the same code that ``ctsgan generate`` runs:
- ``optimized`` (default): the recipe's inference generator (CT-SGAN: BatchNorm folded into the
  transposed convolutions), channels-last layout, ``torch.inference_mode``, many 3-slices per
  generator call, bf16 autocast when asked (and optionally ``torch.compile``);
- ``naive`` (``--naive``): the trained module as is, contiguous layout, one 3-slice per call.

With ``n`` (``-n N``), throughput at scale, as ``ctsgan generate -n N`` runs it:

- ``volumes_per_second_generator``: N volumes, ``batch`` per generator call, to int16 HU arrays
  on the host, nothing written;
- ``volumes_per_second_end_to_end``: the same N volumes generated and written in ``format`` with
  previews by ``writers`` worker processes behind the bounded queue
  (:func:`ctsgan.generation.generate.write_volume_batches`, the code ``generate`` runs; the
  worker start-up is included);
- ``volumes_per_second_end_to_end_serial`` (``serial_baseline``): the previous pipeline in the
  same run: one volume per call, written and previewed in this process before the next.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from ctsgan.bench.procmem import peak_rss_bytes
from ctsgan.config import parse_choice
from ctsgan.generation.generate import (
    OutputFormat,
    default_writers,
    to_channels_last,
    unit_to_hu_array,
    volume_seed,
    write_volume_batches,
)
from ctsgan.training.recipes import get_recipe


class BenchDtype(StrEnum):
    """Compute precision: strict fp32 (TF32 off), TF32 tensor cores (CUDA), bf16 autocast."""

    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """GFLOP/s of an (n x n) @ (n x n) matmul in ``dtype`` on ``device`` (median of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b  # warm-up (library init, clocks)
    times = [_timed(lambda: a @ b, device) for _ in range(repeats)]
    return 2.0 * n**3 / statistics.median(times) / 1e9


def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def bench_generate(
    size: int = 224,
    device: str = "cpu",
    dtype: str = "fp32",
    model: str = "ctsgan",
    repeats: int = 3,
    chunk: int | None = None,
    naive: bool = False,
    compile: bool = False,
    matmul_size: int | None = None,
    seed: int = 0,
    n: int | None = None,
    fmt: str = "npy",
    batch: int | None = None,
    writers: int | None = None,
    previews: bool = True,
    serial_baseline: bool = False,
) -> dict[str, Any]:
    """Time generation of ``size``^3 volumes with the paper-scale generator of ``model``.

    Args:
        size: volume edge S.
        device: ``cpu`` or ``cuda``.
        dtype: ``fp32`` (strict), ``tf32`` (CUDA tensor cores) or ``bf16`` (autocast).
        model: a registered recipe with a generation benchmark (``ctsgan``, ``gan3d``).
        repeats: timed volumes (the median is reported) after one warm-up volume.
        chunk: 2D slices per generator call (default: the model's for this device; naive: 1).
        naive: time the unoptimised path (see module docstring).
        compile: wrap the 2D generator in ``torch.compile`` (optimized path only).
        matmul_size: edge of the reference matmul (default 2048 on CPU, 8192 on CUDA).
        seed: volume seeds are ``seed, seed + 1, ...``.
        n: volumes for the throughput figures (None: skip them).
        fmt: file format of the end-to-end run (``nifti``, ``npy``, ``dicom``).
        batch: volumes per generator call (default: the model's for this device).
        writers: writer processes (default: as ``ctsgan generate``).
        previews: write previews in the end-to-end runs (``generate``'s default).
        serial_baseline: also time the one-volume-at-a-time, in-process pipeline.

    Returns:
        one JSON-ready dict (see docs/ctsgan.md for the fields).
    """
    dt = BenchDtype(dtype) if dtype in BenchDtype.__members__.values() else None
    if dt is None:
        raise ValueError(f"dtype must be one of {[d.value for d in BenchDtype]}, got {dtype!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be one of ['cpu', 'cuda'], got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if dt == BenchDtype.TF32 and device != "cuda":
        raise ValueError("dtype 'tf32' needs --device cuda")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    fmt_e = parse_choice(OutputFormat, fmt, "format")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if writers is not None and writers < 0:
        raise ValueError(f"writers must be >= 0, got {writers}")
    dev = torch.device(device)
    if dev.type == "cuda":
        _set_tf32(dt == BenchDtype.TF32)
        torch.backends.cudnn.benchmark = not naive  # fixed shapes: let cuDNN pick its fastest kernels
    compute = torch.bfloat16 if dt == BenchDtype.BF16 else torch.float32

    recipe = get_recipe(model)
    config, kwargs = recipe.bench_setup(size)
    torch.manual_seed(seed)
    gen = recipe.build_networks(config).generator.eval()
    if not naive:
        gen = recipe.inference_generator(gen)
    gen = gen.to(dev)
    if not naive:
        gen = to_channels_last(gen)
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # constant weights: lets inductor fuse and pre-pack them
            inner = getattr(gen, "g_slice", None)
            if inner is not None:
                gen.g_slice = torch.compile(inner, dynamic=False)  # type: ignore[assignment]
            else:
                gen = torch.compile(gen, dynamic=False)  # type: ignore[assignment]
    user_chunk = chunk
    chunk = 1 if naive and chunk is None else (chunk or recipe.default_chunk(config, dev))

    def run(s: int) -> torch.Tensor:
        return recipe.sample_volume(gen, config, s, dev, dtype=compute, chunk=chunk, **kwargs)

    vol = run(seed)  # warm-up (and compile)
    shape = tuple(vol.shape)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    mm_n = matmul_size or (8192 if dev.type == "cuda" else 2048)
    times, paired_mm = [], []
    for i in range(repeats):  # each volume is followed by a matmul timing under the same machine load
        times.append(_timed(lambda i=i: run(seed + 1 + i), dev))  # type: ignore[misc]
        paired_mm.append(matmul_gflops(dev, compute, mm_n, repeats=3))
    lo, hi = config.hu_window
    knots = config.hu_knots
    if dev.type == "cuda":
        host = [_timed(lambda i=i: unit_to_hu_array(run(seed + 1 + i), lo, hi, knots), dev) for i in range(repeats)]  # type: ignore[misc]
    else:  # already in host memory: add the HU conversion alone
        host = [t + _timed(lambda: unit_to_hu_array(vol, lo, hi, knots), dev) for t in times]
    if dev.type == "cuda":
        peak, peak_kind = int(torch.cuda.max_memory_allocated(dev)), "cuda_max_memory_allocated"
    else:
        peak, peak_kind = peak_rss_bytes(), "process_peak_rss"

    from torch.utils.flop_counter import FlopCounterMode

    def count_gflop(module: torch.nn.Module) -> float:
        with FlopCounterMode(display=False) as fc:
            # FLOPs do not depend on the chunking; a large chunk keeps the naive count quick
            recipe.sample_volume(module, config, seed, dev, dtype=compute, chunk=max(chunk, 32), **kwargs)
        return fc.get_total_flops() / 1e9

    defined = recipe.build_networks(config).generator.eval().to(dev)
    gflop = count_gflop(defined)  # the model as defined
    # what runs: the inference copy can do less arithmetic for the same function (CT-SGAN's
    # resize layers become transposed convolutions, 2.25x fewer FLOPs there)
    gflop_run = gflop if naive else count_gflop(recipe.inference_generator(defined).to(dev))
    del defined

    batch = batch or recipe.default_batch(config, dev)
    writers = default_writers(dev) if writers is None else writers
    scale: dict[str, Any] = {
        "format": fmt_e.value, "n": n, "batch": batch, "writers": writers, "previews": previews,
        "volumes_per_second_generator": None, "volumes_per_second_end_to_end": None,
        "volumes_per_second_end_to_end_serial": None, "end_to_end_over_generator": None,
    }
    if n is not None:
        scale.update(_throughput(recipe, gen, config, dev, compute, user_chunk, kwargs, n, fmt_e, batch, writers, previews,
                                 serial_baseline, seed))

    sec = statistics.median(times)
    achieved = gflop_run / sec
    mm = matmul_gflops(dev, compute, mm_n)
    return {
        "model": model,
        "size": size,
        "volume_shape": list(shape),
        "device": device,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "dtype": dt.value,
        "path": "naive" if naive else ("optimized+compile" if compile else "optimized"),
        "chunk": chunk,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "seconds_per_volume": sec,
        "seconds_all": times,
        "seconds_per_volume_to_host": statistics.median(host),
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "gflop_per_volume": gflop,
        "gflop_per_volume_executed": gflop_run,
        "achieved_gflops": achieved,
        "matmul_gflops": mm,
        "matmul_size": mm_n,
        "efficiency": achieved / mm,
        # per volume: achieved / the matmul timed right after it (robust on a shared machine)
        "efficiency_paired_median": statistics.median(gflop_run / t / m for t, m in zip(times, paired_mm, strict=True)),
        **scale,
        "torch": torch.__version__,
    }


def _throughput(
    recipe: Any, gen: torch.nn.Module, config: Any, dev: torch.device, compute: torch.dtype, chunk: int | None,
    kwargs: dict[str, Any], n: int, fmt: OutputFormat, batch: int, writers: int, previews: bool,
    serial_baseline: bool, seed: int,
) -> dict[str, Any]:
    """Volumes per second over ``n`` volumes: generator only, end to end, and (optionally) serially."""
    lo, hi = config.hu_window
    knots = config.hu_knots
    run_seed = seed + 1000  # other volumes than the per-volume timings

    def sample(indices: Any) -> Any:
        seeds = [volume_seed(run_seed, i) for i in indices]
        if len(seeds) == 1:
            unit = recipe.sample_volume(gen, config, seeds[0], dev, dtype=compute, chunk=chunk, **kwargs)[None]
        else:
            unit = recipe.sample_volumes(gen, config, seeds, dev, dtype=compute, chunk=chunk, **kwargs)
        return [unit_to_hu_array(v, lo, hi, knots) for v in unit]  # one host array per volume, as generate does

    def generate_only() -> None:
        for i in range(0, n, batch):
            sample(range(i, min(i + batch, n)))  # arrays dropped at once, as a writer would

    sample(range(min(batch, n)))  # warm-up at this batch size
    # best of two passes: a single pass on a GPU was sometimes slower than the end-to-end run after it
    t_gen = min(_timed(generate_only, dev) for _ in range(2))
    out: dict[str, Any] = {"volumes_per_second_generator": n / t_gen}

    def end_to_end(b: int, w: int) -> float:
        folder = Path(tempfile.mkdtemp(prefix="ctsgan-bench-gen-"))
        try:
            t0 = time.perf_counter()
            write_volume_batches(range(n), run_seed, folder, fmt, sample, lambda shape: (1.0, 1.0, 1.0),
                                 batch=b, writers=w, previews=previews)
            return n / (time.perf_counter() - t0)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    out["volumes_per_second_end_to_end"] = end_to_end(batch, writers)
    out["end_to_end_over_generator"] = out["volumes_per_second_generator"] / out["volumes_per_second_end_to_end"]
    if serial_baseline:
        out["volumes_per_second_end_to_end_serial"] = end_to_end(1, 0)
    return out


def format_table(result: dict[str, Any]) -> str:
    """A readable two-column table of a :func:`bench_generate` result."""
    rows = [
        ("model", result["model"]),
        ("volume", "x".join(map(str, result["volume_shape"]))),
        ("device", f"{result['device']} ({result['device_name']}), {result['threads']} threads"),
        ("dtype / path / chunk", f"{result['dtype']} / {result['path']} / {result['chunk']}"),
        ("seconds per volume", f"{result['seconds_per_volume']:.4f} (median of {result['repeats']}; volume on the device)"),
        ("  ... as int16 HU on host", f"{result['seconds_per_volume_to_host']:.4f}"),
        ("peak memory", f"{result['peak_memory_bytes'] / 2**20:.0f} MiB ({result['peak_memory_kind']})"),
        ("GFLOP per volume", f"{result['gflop_per_volume']:.1f} as defined, {result['gflop_per_volume_executed']:.1f} executed"),
        ("achieved GFLOP/s", f"{result['achieved_gflops']:.1f}"),
        (f"matmul {result['matmul_size']}^2 GFLOP/s", f"{result['matmul_gflops']:.1f}"),
        ("efficiency", f"{result['efficiency']:.2f} (paired per volume: {result['efficiency_paired_median']:.2f})"),
    ]
    if result.get("volumes_per_second_generator") is not None:
        rows += [
            (f"{result['n']} volumes, batch {result['batch']}", f"{result['volumes_per_second_generator']:.3f} volumes/s (generator, int16 on host)"),
            (f"  ... written ({result['format']}, {result['writers']} writers)",
             f"{result['volumes_per_second_end_to_end']:.3f} volumes/s (x{result['end_to_end_over_generator']:.2f} of generator time)"),
        ]
        if result.get("volumes_per_second_end_to_end_serial") is not None:
            rows.append(("  ... serial (batch 1, in-process writes)", f"{result['volumes_per_second_end_to_end_serial']:.3f} volumes/s"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
