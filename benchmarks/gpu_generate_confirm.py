"""Batched 224^3 generation on one GPU at the CUDA defaults, after the resize-layer fix (issue 14).

Four ``bench generate`` runs, bf16, npy, 8 writers: batch 1, 64 and 128 at the default G_slice
chunk, and batch 128 with calls of 2048 3-slices. One JSON line each in ``OUT/confirm.jsonl``
(docs/results/gpu_h200/generate_chunk512_2026-11-30.jsonl is the H200 run).

Usage (repo root): ``PYTHONPATH=src python benchmarks/gpu_generate_confirm.py OUT``; ``DEV=cpu``
runs the same four at 16^3 in fp32. On the lent H200, with the ``.whl`` wheels of
benchmarks/gpu_issue14.py::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 && \
      python3 benchmarks/gpu_generate_confirm.py $OUT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ctsgan.bench.generate import bench_generate

#: (batch, G_slice chunk or None for the default) of each run
RUNS = ((1, None), (64, None), (128, None), (128, 2048))
KEYS = ("chunk", "seconds_per_volume", "seconds_per_volume_to_host", "efficiency",
        "volumes_per_second_generator", "volumes_per_second_end_to_end")


def main(out_dir: Path) -> list[dict[str, Any]]:
    dev = os.environ.get("DEV", "cuda")
    size, dtype = (224, "bf16") if dev == "cuda" else (16, "fp32")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    with (out_dir / "confirm.jsonl").open("a") as fh:
        for batch, chunk in RUNS:
            try:
                result = bench_generate(size=size, device=dev, dtype=dtype, repeats=3, n=max(64, batch), fmt="npy",
                                        batch=batch, chunk=chunk, writers=8 if dev == "cuda" else 0)
                rec: dict[str, Any] = {"batch": batch, "chunk_arg": chunk, "ok": True, "result": result}
            except Exception as e:  # noqa: BLE001 -- record it, run the next
                rec = {"batch": batch, "chunk_arg": chunk, "ok": False, "error": repr(e)}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            shown = {k: rec["result"].get(k) for k in KEYS} if rec["ok"] else rec["error"]
            print(batch, chunk, rec["ok"], shown, flush=True)
            records.append(rec)
    return records


if __name__ == "__main__":
    main(Path(sys.argv[1]))
