"""Evaluation speed benchmark: Inception images per second, counted GFLOP per image, efficiency.

``ctsgan evaluate`` spends its time in the FID Inception (:class:`ctsgan.metrics.inception.InceptionFeatures`):
one 299x299 forward pass per slice. This benchmark times exactly that path on ``n`` HU slices of
``size`` x ``size`` (random HU values: the cost does not depend on the content):

- ``images_per_second``: HU slices -> 2048-d features, everything included (window to 8-bit
  grey, resize to 299, batching, the network, the copy back);
- ``model_images_per_second``: the network alone on inputs already at 299 (so the difference is
  what is not compute);
- ``gflop_per_image``: counted with ``torch.utils.flop_counter.FlopCounterMode`` on the TorchScript
  network itself (one image);
- ``achieved_gflops`` = ``gflop_per_image * images_per_second``; ``matmul_gflops``: a square
  float32 matmul timed in the same process after each timed pass (same threads, same machine
  load); ``efficiency`` = achieved / matmul (median of the per-pass ratios: robust on a shared machine).
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ctsgan.bench.generate import matmul_gflops
from ctsgan.metrics.inception import INPUT_SIZE, InceptionFeatures, slices_to_input


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_gflop_per_image(extractor: InceptionFeatures) -> float:
    """GFLOP of one 299x299 forward pass of the extractor's network (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=extractor.device)
    with torch.inference_mode(), torch.jit.optimized_execution(False), FlopCounterMode(display=False) as fc:
        extractor.model(x)
    return fc.get_total_flops() / 1e9


def bench_evaluate(
    size: int = 64,
    n: int = 64,
    batch_size: int = 32,
    device: str = "cpu",
    repeats: int = 3,
    inception: str | Path | None = None,
    matmul_size: int | None = None,
    seed: int = 0,
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Time Inception features of ``n`` HU slices (N, 1, size, size), ``repeats`` times.

    ``channels_last``: feed the network NHWC inputs (None: the device's default, as ``evaluate``).

    Returns:
        one JSON-ready dict with ``images_per_second``, ``model_images_per_second``,
        ``gflop_per_image``, ``achieved_gflops``, ``matmul_gflops``, ``efficiency`` and the settings.
    """
    if size < 1 or n < 1 or batch_size < 1 or repeats < 1:
        raise ValueError(f"size, n, batch_size and repeats must be >= 1, got {size}, {n}, {batch_size}, {repeats}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    dev = torch.device(device)
    extractor = InceptionFeatures(inception, device=dev, batch_size=batch_size, channels_last=channels_last)
    g = torch.Generator().manual_seed(seed)
    slices = torch.randint(-1024, 1500, (n, 1, size, size), generator=g).to(torch.float32)
    mm_n = matmul_size or (8192 if dev.type == "cuda" else 2048)

    extractor.features(slices[: min(n, batch_size)])  # warm-up: library init, kernel choice
    times, paired = [], []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        extractor.features(slices)
        _sync(dev)
        times.append(time.perf_counter() - t0)
        paired.append(matmul_gflops(dev, torch.float32, mm_n, repeats=3))

    # the network alone, on inputs already windowed and resized (what is left is not compute)
    prepared = [slices_to_input(slices[i : i + batch_size].to(dev), extractor.window) for i in range(0, n, batch_size)]
    prepared = [extractor.to_model_layout(p) for p in prepared]
    model_times = []
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        for _ in range(repeats):
            _sync(dev)
            t0 = time.perf_counter()
            for p in prepared:
                extractor.model(p)
            _sync(dev)
            model_times.append(time.perf_counter() - t0)

    gflop = count_gflop_per_image(extractor)
    sec = statistics.median(times)
    ips = n / sec
    return {
        "size": size,
        "n": n,
        "batch_size": batch_size,
        "device": device,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "channels_last": extractor.channels_last,
        "repeats": repeats,
        "seconds_all": times,
        "images_per_second": ips,
        "model_images_per_second": n / statistics.median(model_times),
        "non_compute_fraction": max(0.0, 1.0 - statistics.median(model_times) / sec),
        "gflop_per_image": gflop,
        "achieved_gflops": gflop * ips,
        "matmul_gflops": statistics.median(paired),
        "matmul_size": mm_n,
        "efficiency": statistics.median(gflop * n / t / m for t, m in zip(times, paired, strict=True)),
        "torch": torch.__version__,
    }


def format_table(result: dict[str, Any]) -> str:
    """A readable two-column table of a :func:`bench_evaluate` result."""
    rows = [
        ("slices", f"{result['n']} x {result['size']}^2 HU -> 299^2, batch {result['batch_size']}"),
        ("device", f"{result['device']} ({result['device_name']}), {result['threads']} threads"),
        ("images per second", f"{result['images_per_second']:.2f} (network alone: {result['model_images_per_second']:.2f})"),
        ("not compute", f"{100 * result['non_compute_fraction']:.1f} % of the time"),
        ("GFLOP per image", f"{result['gflop_per_image']:.2f}"),
        ("achieved GFLOP/s", f"{result['achieved_gflops']:.1f}"),
        (f"matmul {result['matmul_size']}^2 GFLOP/s", f"{result['matmul_gflops']:.1f}"),
        ("efficiency", f"{result['efficiency']:.2f} (median over passes of achieved / matmul timed after it)"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
