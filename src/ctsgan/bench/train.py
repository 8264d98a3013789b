"""``ctsgan bench train``: training steps per second, FLOPs per step and where a step's time goes.

One process, the shared trainer's phases run by hand so each part can be timed:

- ``steps_per_second``: timed steps (after ``warmup``), each = ``d_steps`` D updates + one G update
  + the EMA update, exactly what :meth:`ctsgan.training.loop.Trainer.train_step` does;
- ``gflop_per_step``: counted once with ``torch.utils.flop_counter.FlopCounterMode`` over a whole
  step (forward and backward) *without* the gradient penalty, whose ``autograd.grad`` the counter
  cannot follow (``gflop_counted_without_penalty``): a lower bound, so efficiency is too;
- ``achieved_gflops`` = ``gflop_per_step * steps_per_second``; ``matmul_gflops``: a square float32
  matmul timed in the same process right after; ``efficiency`` = achieved / matmul;
- ``profile``: mean seconds per step of ``sample`` (real batch), ``d_forward`` (rendering fakes,
  both Ds, penalty graph), ``d_backward_step``, ``g_forward``, ``g_backward_step``, ``ema``;
- ``peak_memory_bytes`` over the timed steps (``peak_memory_kind``): on CUDA
  ``torch.cuda.max_memory_allocated`` (reset after the warm-up), on CPU the process's peak RSS
  (reset after the warm-up where Linux allows it; it includes Python and torch themselves).

Synthetic data (one smooth random cube of the config's size, as ``bench memory``): content does
not change the arithmetic.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ctsgan.bench.generate import matmul_gflops
from ctsgan.bench.procmem import peak_rss_bytes, reset_peak_rss

PARTS = ("sample", "d_forward", "d_backward_step", "g_forward", "g_backward_step", "ema")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(
    model: str = "ctsgan",
    config: str = "cpu64",
    steps: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    matmul_size: int | None = None,
) -> dict[str, Any]:
    """Time ``steps`` training steps of ``model`` with preset/YAML ``config`` on ``device``.

    Returns:
        a JSON-able dict with the keys of the module docstring and the settings.
    """
    from ctsgan.bench.dataset import write_bench_dataset
    from ctsgan.training.loop import single_process_trainer
    from ctsgan.training.recipes import get_recipe

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA device is available")
    recipe = get_recipe(model)
    cfg = recipe.load_config(config)
    cfg.device = dev.type
    size = int(getattr(cfg, "size", 64))
    depth = int(getattr(cfg, "depth", size))
    with tempfile.TemporaryDirectory(prefix="ctsgan-bench-train-") as tmp:
        work = Path(tmp)
        write_bench_dataset(work / "data", size, depth)
        trainer = single_process_trainer(recipe, cfg, work / "data", work / "run", dev)
        nets = trainer.nets
        times = dict.fromkeys(PARTS, 0.0)

        def timed(part: str, fn: Any) -> Any:
            _sync(dev)
            t0 = time.perf_counter()
            out = fn()
            _sync(dev)
            times[part] += time.perf_counter() - t0
            return out

        def step(c: Any = cfg) -> None:
            assert trainer.sampler is not None
            for i in range(c.d_steps):
                real = timed("sample", lambda: {k: v.to(dev) for k, v in trainer.sampler.sample(c.batch_size).items()})  # type: ignore[union-attr]
                w = c.penalty_weight_at(trainer.step * c.d_steps + i)
                loss_d, _ = timed("d_forward", lambda: recipe.d_step(nets, real, c, trainer.noise, penalty_weight=w))  # noqa: B023
                timed("d_backward_step", lambda: _update(loss_d, trainer.opt_d))  # noqa: B023
            nets.discriminator.requires_grad_(False)
            try:
                loss_g, _ = timed("g_forward", lambda: recipe.g_step(nets, c.batch_size, c, trainer.noise, real=real))
                timed("g_backward_step", lambda: _update(loss_g, trainer.opt_g))
            finally:
                nets.discriminator.requires_grad_(True)
            timed("ema", trainer.update_ema)
            trainer.step += 1

        for _ in range(warmup):
            step()
        from torch.utils.flop_counter import FlopCounterMode

        # FlopCounterMode's module hooks cannot follow autograd.grad (R1 / WGAN-GP): the step is
        # counted without the gradient penalty, so gflop_per_step is a lower bound.
        uncounted = cfg.model_copy(update={"penalty": "none"})
        counter = FlopCounterMode(display=False)
        with counter:
            step(uncounted)
        gflop = counter.get_total_flops() / 1e9
        times = dict.fromkeys(PARTS, 0.0)
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        else:
            reset_peak_rss()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        wall = time.perf_counter() - t0
        if dev.type == "cuda":
            peak, peak_kind = int(torch.cuda.max_memory_allocated(dev)), "cuda_max_memory_allocated"
        else:
            peak, peak_kind = peak_rss_bytes(), "process_peak_rss"
    sps = steps / wall
    mm = matmul_gflops(dev, torch.float32, matmul_size or (8192 if dev.type == "cuda" else 2048))
    achieved = gflop * sps
    return {
        "model": model,
        "config": config,
        "device": dev.type,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "batch_size": cfg.batch_size,
        "steps_per_second": sps,
        "gflop_per_step": gflop,
        "achieved_gflops": achieved,
        "matmul_gflops": mm,
        "efficiency": achieved / mm if mm > 0 else None,
        "profile": {k: v / steps for k, v in times.items()},
        "gflop_counted_without_penalty": cfg.penalty != "none",
        "profile_other": max(0.0, wall / steps - sum(times.values()) / steps),
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def _update(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def format_table(result: dict[str, Any]) -> str:
    """A few lines for a terminal."""
    prof = result["profile"]
    total = sum(prof.values()) or 1.0
    lines = [
        f"{result['model']} {result['config']} on {result['device']} ({result['threads']} threads): "
        f"{result['steps_per_second']:.2f} steps/s, {result['gflop_per_step']:.2f} GFLOP/step, "
        f"{result['achieved_gflops']:.1f} GFLOP/s of a {result['matmul_gflops']:.1f} GFLOP/s matmul "
        f"(efficiency {result['efficiency']:.2f})",
        f"peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB ({result['peak_memory_kind']})",
        "where a step's time goes:",
    ]
    lines += [f"  {k:<16} {1000 * v:8.1f} ms  {100 * v / total:5.1f} %" for k, v in prof.items()]
    return "\n".join(lines)
