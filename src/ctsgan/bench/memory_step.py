"""The inside of one ``ctsgan bench memory`` configuration: ``python -m ctsgan.bench.memory_step CASE_JSON``
builds the case's networks in this fresh process, takes the baseline, runs one warm-up and the
timed training steps of the shared loop, and prints one result line (:data:`RESULT_TAG` + JSON)
that :func:`ctsgan.bench.memory.measure_in_subprocess` reads. The memory accounting is described in
:mod:`ctsgan.bench.memory`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ctsgan.bench.dataset import write_bench_dataset
from ctsgan.bench.memory import (
    LIMITED_OOM_PATTERNS,
    OOM_PATTERNS,
    RESULT_TAG,
    BenchDevice,
    CaseResult,
    MemoryCase,
    Widths,
    bench_config,
    format_bytes,
)
from ctsgan.bench.procmem import address_space_bytes, peak_rss_bytes, proc_status_bytes, reset_peak_rss


def recipe_training_step(case: MemoryCase, workdir: Path) -> tuple[Callable[[], None], dict[str, int]]:
    """The shared trainer's one training step (``d_steps`` D updates, then one G update) for the
    recipe ``case.model``, on the data written to ``workdir / "data"`` by :func:`write_bench_dataset`.

    Returns:
        (step, {network: parameter count}).
    """
    import torch

    from ctsgan.training.loop import single_process_trainer
    from ctsgan.training.recipes import get_recipe

    cfg = bench_config(case)
    trainer = single_process_trainer(get_recipe(case.model), cfg, workdir / "data", workdir / "run", torch.device(case.device))
    params = {
        "G": sum(p.numel() for p in trainer.nets.generator.parameters()),
        "D": sum(p.numel() for p in trainer.nets.discriminator.parameters()),
    }

    def step() -> None:
        trainer.train_step()

    return step, params


# ----------------------------------------------------------------------------------------------
# Inside the subprocess


def _warm_up_libraries() -> None:
    """Run every kind of op a training step uses once on tiny tensors (2D / 3D convolutions and
    transposed convolutions, batch norm, LSTM, Adam), so that lazily loaded kernels, modules and
    thread pools (about 100 MiB of RSS on CPU, most of it Adam's first step) count in the baseline
    rather than in the model's peak."""
    import torch
    import torch.nn.functional as F

    x3 = torch.randn(1, 2, 4, 4, 4, requires_grad=True)
    x2 = torch.randn(1, 2, 4, 4, requires_grad=True)
    w3, w2 = torch.randn(2, 2, 3, 3, 3, requires_grad=True), torch.randn(2, 2, 3, 3, requires_grad=True)
    lstm = torch.nn.LSTM(2, 2, batch_first=True, bidirectional=True)
    bn3, bn2 = torch.nn.BatchNorm3d(2), torch.nn.BatchNorm2d(2)
    y = F.conv3d(x3, w3, padding=1).sum() + F.conv_transpose3d(x3, w3, stride=2, padding=1).sum()
    y = y + F.conv2d(x2, w2, padding=1).sum() + F.conv_transpose2d(x2, w2, stride=2, padding=1).sum()
    y = y + bn3(x3).sum() + bn2(x2).sum() + lstm(x2[:, :, 0].transpose(1, 2))[0].sum()
    y = y + F.softplus(y) + F.leaky_relu(y, 0.2) + torch.tanh(y)
    y.backward()
    params = [w3, w2, *lstm.parameters(), *bn3.parameters()]
    opt = torch.optim.Adam(params, 1e-4, betas=(0.5, 0.999))
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure_case(case: MemoryCase) -> CaseResult:
    """Run one warm-up step and ``case.repeats`` timed steps in THIS process and measure them.

    Meant to run in a fresh subprocess (:func:`measure_in_subprocess`); a run that does not fit
    returns ``fits=False`` with the reason instead of raising.
    """
    import torch

    if case.threads is not None:
        torch.set_num_threads(case.threads)
    base = CaseResult(case.label, case.model, case.size, case.slices, fits=False)
    device = BenchDevice(case.device)
    workdir = Path(tempfile.mkdtemp(prefix="ctsgan-bench-"))
    try:
        # Before the baseline: making the data and importing the modules a step needs (under a
        # memory limit, a late import could fail for lack of address space) are not the step.
        write_bench_dataset(workdir / "data", case.size, case.slices or case.size)
        import ctsgan.training.loop  # noqa: F401

        bench_config(case)
        return _measure_steps(case, device, base, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure_steps(case: MemoryCase, device: BenchDevice, base: CaseResult, workdir: Path) -> CaseResult:
    import platform

    import torch

    base.torch_version = torch.__version__
    base.device_name = platform.processor() or platform.machine()
    if device == BenchDevice.CUDA:
        if not torch.cuda.is_available():
            base.reason = "CUDA is not available"
            return base
        base.device_name = torch.cuda.get_device_name(0)
        if case.memory_limit_bytes is not None:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, case.memory_limit_bytes / total))
        torch.cuda.reset_peak_memory_stats()
        base.baseline_bytes = int(torch.cuda.memory_allocated())
    else:
        _warm_up_libraries()
        base.baseline_bytes = proc_status_bytes("VmRSS") if reset_peak_rss() else peak_rss_bytes()
        if case.memory_limit_bytes is not None:
            import resource

            limit = address_space_bytes() + case.memory_limit_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def sync() -> None:
        if device == BenchDevice.CUDA:
            torch.cuda.synchronize()

    try:
        step, params = recipe_training_step(case, workdir)
        base.params = params
        step()  # warm-up step: allocations, cuDNN / oneDNN algorithm choice
        sync()
        times = []
        for _ in range(max(1, case.repeats)):
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
    except Exception as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        limited = case.memory_limit_bytes is not None and LIMITED_OOM_PATTERNS.search(str(e))
        if isinstance(e, MemoryError) or OOM_PATTERNS.search(str(e)) or limited:
            limit_note = "" if case.memory_limit_bytes is None else f" (memory limit {format_bytes(case.memory_limit_bytes)})"
            base.reason = f"does not fit{limit_note}: {type(e).__name__}: {msg[:300]}"
        else:
            base.reason = f"failed: {type(e).__name__}: {msg[:300]}"
        return base
    times.sort()
    base.fits = True
    base.step_seconds = times[len(times) // 2]
    if device == BenchDevice.CUDA:
        base.raw_peak_bytes = int(torch.cuda.max_memory_allocated())
        base.peak_bytes = base.raw_peak_bytes - (base.baseline_bytes or 0)
    else:
        base.raw_peak_bytes = peak_rss_bytes()
        base.peak_bytes = base.raw_peak_bytes - base.baseline_bytes
    return base




def _worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    spec["widths"] = Widths(**spec["widths"])
    result = measure_case(MemoryCase(**spec))
    print(RESULT_TAG + json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
