"""Peak memory and time of ONE training step (D update + G update, batch 1 by default), per model and size.

CT-SGAN's claim is that it trains at 224^3 with a small footprint because each step renders only
the slices its discriminators look at, while a 3D GAN must hold whole cubes (and their
activations) in memory. :func:`run_memory_benchmark` measures that, all in one run:

- each configuration runs in a FRESH Python subprocess (``python -m ctsgan.bench.memory_step``), so
  one configuration's allocations never inflate another's peak;
- CPU: peak resident set size (the kernel's high-water mark ``VmHWM``, the counter behind
  ``getrusage(RUSAGE_SELF).ru_maxrss`` without the parent's peak that ``ru_maxrss`` inherits
  across vfork + exec) MINUS a baseline taken in the same subprocess just before the models are built: after importing torch and the
  trainer, a tiny warm-up of every op kind (thread pools, kernel libraries), writing the
  one-volume data set and ``malloc_trim``, the peak is reset (``/proc/self/clear_refs``, Linux
  >= 4.0) and the baseline is the RSS at that moment. The reported peak is therefore what the
  models, optimisers, data reads and the step's activations added. Where the reset is refused,
  the baseline is the peak RSS so far (the result can then be too low for very small models).
  The raw peak RSS is kept too (``raw_peak_bytes``);
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (taken before the
  models are built, so weights, optimiser states and activations all count);
- the step time is the median wall time of ``repeats`` steps after a first (warm-up) step, with
  ``torch.cuda.synchronize`` around each step on GPU;
- a configuration that does not fit (MemoryError, an allocator failure, CUDA OOM, a subprocess
  killed by the system, or one that goes over ``memory_limit_bytes``) is reported as
  ``fits=False`` with the reason; the benchmark itself never crashes on it. On CPU the limit is
  enforced with ``resource.setrlimit(RLIMIT_AS)`` on the subprocess (address space allowed to grow
  by ``memory_limit_bytes`` over the baseline); on CUDA with
  ``torch.cuda.set_per_process_memory_fraction``.

The step is the shared trainer's own (``ctsgan.training.loop``) on the recipe ``ctsgan`` or ``gan3d``
(:func:`recipe_training_step`): same sampler (over a one-volume synthetic dataset written before
the baseline), losses, penalties and optimizers as ``ctsgan train``. Settings are the paper
presets (``ctsgan_paper224``, ``gan3d_paper128``) with the size, the widths and the batch size (default 1) replaced
(:func:`bench_config`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class BenchDevice(StrEnum):
    """Where the step runs."""

    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class Widths:
    """Network widths held EQUAL between the models compared (default: CT-SGAN paper224's G_slice
    and D_slice widths, 32 doubling per level up to 512).

    Args:
        g_base: base channel count of every generator (3D GAN: the finest hidden level; CT-SGAN's
            G_slice: the same role in its 2D pyramid).
        d_base: base channel count of every discriminator (3D GAN D; CT-SGAN D_slice and D_slab).
        max_channels: cap on any level's width, for all networks.
    """

    g_base: int = 32
    d_base: int = 32
    max_channels: int = 512

    @classmethod
    def parse(cls, text: str) -> Widths:
        """``"16"`` (G and D) / ``"16,32"`` (G, D) / ``"16,32,256"`` (G, D, max) -> Widths."""
        try:
            parts = [int(p) for p in text.replace(" ", "").split(",") if p]
        except ValueError:
            raise ValueError(f"widths must be 'N', 'G,D' or 'G,D,MAX' integers, got {text!r}") from None
        if not 1 <= len(parts) <= 3 or any(p < 1 for p in parts):
            raise ValueError(f"widths must be 'N', 'G,D' or 'G,D,MAX' positive integers, got {text!r}")
        g = parts[0]
        d = parts[1] if len(parts) > 1 else g
        cap = parts[2] if len(parts) > 2 else max(cls.max_channels, g, d)
        if cap < max(g, d):
            raise ValueError(f"max channels {cap} is below a base width ({g}, {d})")
        return cls(g, d, cap)


@dataclass(frozen=True)
class MemoryCase:
    """One configuration to measure.

    Args:
        label: key prefix in the benchmark's JSON (e.g. ``gan3d_128``).
        model: ``ctsgan`` or ``gan3d``.
        size: cube edge S (the volume is (slices, S, S) for CT-SGAN, (S, S, S) for the 3D GAN).
        slices: CT-SGAN volume depth L (number of axial positions R_v runs over); None: ``size``.
        device: ``cpu`` or ``cuda``.
        widths: network widths (equal for both models).
        repeats: timed steps after the warm-up step (the reported time is their median).
        memory_limit_bytes: how much the subprocess may grow beyond its baseline; None: no limit.
        threads: torch intra-op threads in the subprocess (None: torch's default).
        batch_size: volumes per step (the issue's comparison uses 1).
    """

    label: str
    model: str
    size: int
    slices: int | None
    device: str
    widths: Widths
    repeats: int = 1
    memory_limit_bytes: int | None = None
    threads: int | None = None
    batch_size: int = 1


@dataclass
class CaseResult:
    """What one subprocess measured; ``fits=False`` carries the ``reason``."""

    label: str
    model: str
    size: int
    slices: int | None
    fits: bool
    peak_bytes: int | None = None
    raw_peak_bytes: int | None = None
    baseline_bytes: int | None = None
    step_seconds: float | None = None
    reason: str | None = None
    params: dict[str, int] = field(default_factory=dict)
    device_name: str | None = None
    torch_version: str | None = None


def bench_config(case: MemoryCase) -> Any:
    """The recipe config measured for ``case``: the model's benchmark preset (the paper's) with the
    size, slices, widths, batch size and device replaced (:meth:`GanRecipe.bench_config`)."""
    from ctsgan.training.recipes import get_recipe

    w = case.widths
    return get_recipe(case.model).bench_config(
        case.size, slices=case.slices, widths=(w.g_base, w.d_base, w.max_channels), batch_size=case.batch_size,
        device=case.device,
    )


OOM_PATTERNS = re.compile(r"out of memory|can't allocate memory|cannot allocate memory|bad_alloc|Cannot allocate", re.I)
# oneDNN reports a failed scratchpad / workspace allocation as this; it only counts as "does not
# fit" when a memory limit is in force.
LIMITED_OOM_PATTERNS = re.compile(r"could not create a primitive|std::bad_alloc|failed to map segment", re.I)


#: the line prefix of the subprocess's one JSON result
RESULT_TAG = "CTSGAN_BENCH_RESULT "


# ----------------------------------------------------------------------------------------------
# In the parent


def measure_in_subprocess(case: MemoryCase, timeout_s: float | None = None) -> CaseResult:
    """Measure ``case`` in a fresh ``python -m ctsgan.bench.memory_step`` subprocess.

    A subprocess that is killed (e.g. by the kernel's OOM killer), crashes, or runs past
    ``timeout_s`` gives ``fits=False`` with the reason; nothing is raised.
    """
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "ctsgan.bench.memory_step", json.dumps(asdict(case))]
    fail = CaseResult(case.label, case.model, case.size, case.slices, fits=False)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        fail.reason = f"did not finish: one step ran past the {timeout_s:g} s time limit"
        return fail
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            data = json.loads(line[len(RESULT_TAG) :])
            return CaseResult(**data)
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        limit = "" if case.memory_limit_bytes is None else f" (memory limit {format_bytes(case.memory_limit_bytes)})"
        fail.reason = f"does not fit: subprocess killed by {sig}{limit}, probably out of memory; {tail}".rstrip("; ")
    elif OOM_PATTERNS.search(proc.stderr):
        fail.reason = f"does not fit: {tail}"
    else:
        fail.reason = f"failed (exit code {proc.returncode}): {tail}"
    return fail


def format_bytes(n: int | None) -> str:
    """``1536 * 2**20`` -> ``'1.50 GiB'``; None -> ``'-'``."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def parse_bytes(text: str) -> int | None:
    """``'8G'``, ``'512MiB'``, ``'1.5GB'``, ``'1000000'`` -> bytes (binary units); ``'none'`` -> None."""
    t = text.strip().lower()
    if t in ("none", "off", "0"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?", t)
    if not m:
        raise ValueError(f"memory limit must be like 8G, 512M, 1.5GiB, a byte count or 'none', got {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def default_memory_limit(device: str) -> int | None:
    """CPU: half of the memory available now (MemAvailable), so a 3D GAN that would not fit is
    stopped before it pushes other processes out; CUDA: None (the card is the limit)."""
    if device != BenchDevice.CPU:
        return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return None


def run_memory_benchmark(
    size: int,
    device: str = "cpu",
    widths: Widths | None = None,
    reference_size: int = 128,
    memory_limit_bytes: int | None = None,
    repeats: int = 1,
    timeout_s: float | None = 1800.0,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Measure one training step of CT-SGAN at ``size`` (and at twice the slices) and of the 3D GAN
    at ``size`` and at ``reference_size``; return one JSON-able dict.

    Args:
        size: cube edge S.
        device: ``cpu`` or ``cuda``.
        widths: network widths used for BOTH models (default :class:`Widths`).
        reference_size: the 3D GAN's own training size in the paper (128).
        memory_limit_bytes: per-configuration limit (see module doc); None: none.
        repeats: timed steps per configuration after the warm-up step.
        timeout_s: wall-clock limit per configuration.
        threads: torch threads in each subprocess (None: torch's default).
        progress: called with a line of text before each configuration.
        batch_size: volumes per training step (1 in the paper comparison).

    Returns:
        dict with ``<label>_peak_bytes``, ``<label>_step_seconds``, ``<label>_reason``, ``<label>_params`` for labels
        ``ctsgan``, ``ctsgan_2x_slices``, ``gan3d``, ``gan3d_128``, plus ``memory_ratio``
        (gan3d / ctsgan at S; None when either did not fit), ``memory_ratio_128``,
        ``slices_2x_ratio``, ``widths``, ``device``, ``peak_measure`` and ``cases`` (all fields).
    """
    device = str(BenchDevice(device))
    widths = widths or Widths()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    common = dict(
        device=device, widths=widths, repeats=repeats, memory_limit_bytes=memory_limit_bytes, threads=threads,
        batch_size=batch_size,
    )
    cases = [
        MemoryCase("ctsgan", "ctsgan", size, size, **common),  # type: ignore[arg-type]
        MemoryCase("ctsgan_2x_slices", "ctsgan", size, 2 * size, **common),  # type: ignore[arg-type]
        MemoryCase("gan3d", "gan3d", size, None, **common),  # type: ignore[arg-type]
    ]
    if reference_size != size:
        cases.append(MemoryCase("gan3d_128", "gan3d", reference_size, None, **common))  # type: ignore[arg-type]
    results: dict[str, CaseResult] = {}
    for case in cases:
        if progress:
            shape = f"{case.size}^2 x {case.slices} slices" if case.slices is not None else f"{case.size}^3"
            progress(f"measuring {case.model} at {shape} on {device} ...")
        results[case.label] = measure_in_subprocess(case, timeout_s)
    if reference_size == size:
        results["gan3d_128"] = results["gan3d"]

    names = [r.device_name for r in results.values() if r.device_name]
    versions = [r.torch_version for r in results.values() if r.torch_version]
    out: dict[str, Any] = {
        "device": device,
        "device_name": names[0] if names else None,
        "torch": versions[0] if versions else None,
        "size": size,
        "reference_size": reference_size,
        "widths": asdict(widths),
        "peak_measure": (
            "torch.cuda.max_memory_allocated after reset_peak_memory_stats (weights, optimiser states, activations)"
            if device == BenchDevice.CUDA
            else "peak RSS (VmHWM, i.e. ru_maxrss of this process alone) of a fresh subprocess minus its RSS "
            "just before the models are built"
        ),
        "memory_limit_bytes": memory_limit_bytes,
        "batch_size": batch_size,
    }
    for label, r in results.items():
        out[f"{label}_peak_bytes"] = r.peak_bytes
        out[f"{label}_step_seconds"] = r.step_seconds
        out[f"{label}_reason"] = r.reason
        out[f"{label}_params"] = r.params or None

    def ratio(a: str, b: str) -> float | None:
        pa, pb = results[a].peak_bytes, results[b].peak_bytes
        return None if pa is None or pb is None or pb <= 0 else pa / pb

    out["memory_ratio"] = ratio("gan3d", "ctsgan")
    out["memory_ratio_128"] = ratio("gan3d_128", "ctsgan")
    out["slices_2x_ratio"] = ratio("ctsgan_2x_slices", "ctsgan")
    out["cases"] = [asdict(r) for r in results.values()]
    return out


def _count(n: int) -> str:
    """12_345_678 -> '12.3M', 45_600 -> '45.6k'."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def format_table(report: dict[str, Any]) -> str:
    """A readable table of :func:`run_memory_benchmark`'s result."""
    w = report["widths"]
    lines = [
        f"one training step (D + G update, batch {report['batch_size']}) on {report['device']} ({report.get('device_name')}); widths G={w['g_base']} "
        f"D={w['d_base']} max={w['max_channels']} for both models",
        f"peak = {report['peak_measure']}",
        "",
        f"{'configuration':<30}{'peak memory':>14}{'step (s)':>10}{'params G / D':>16}  note",
    ]
    s, ref = report["size"], report["reference_size"]
    rows = [
        ("ctsgan", f"CT-SGAN {s}^2 x {s} slices"),
        ("ctsgan_2x_slices", f"CT-SGAN {s}^2 x {2 * s} slices"),
        ("gan3d", f"3D GAN {s}^3"),
        ("gan3d_128", f"3D GAN {ref}^3"),
    ]
    for label, name in rows:
        peak, secs, reason = report[f"{label}_peak_bytes"], report[f"{label}_step_seconds"], report[f"{label}_reason"]
        if peak is not None:
            peak_s = format_bytes(peak)
        else:
            peak_s = "does not fit" if (reason or "").startswith("does not fit") else "failed"
        secs_s = f"{secs:.3f}" if secs is not None else "-"
        params = report.get(f"{label}_params") or {}
        params_s = f"{_count(params['G'])} / {_count(params['D'])}" if params else "-"
        lines.append(f"{name:<30}{peak_s:>14}{secs_s:>10}{params_s:>16}  {reason or ''}".rstrip())
    lines.append("")
    for key, text in (
        ("memory_ratio", f"3D GAN {s}^3 / CT-SGAN {s}"),
        ("memory_ratio_128", f"3D GAN {ref}^3 / CT-SGAN {s}"),
        ("slices_2x_ratio", f"CT-SGAN {2 * s} slices / {s} slices"),
    ):
        v = report[key]
        lines.append(f"{text:<40}{'n/a' if v is None else f'{v:.2f}x'}")
    return "\n".join(lines)
