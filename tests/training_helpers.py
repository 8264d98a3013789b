"""Reusable checks for any registered GAN recipe (CT-SGAN, gan3d, ...).

- :func:`tiny_config` -- the recipe's ``tiny`` preset with overrides.
- :func:`assert_resume_bit_exact` -- 2n steps straight == n steps + resume + n steps.
- :func:`run_torchrun` -- run a Python script under ``torchrun --standalone`` on CPU (gloo).
- :func:`assert_ddp_consistent` -- 2 CPU processes train a few steps: both ranks end with
  identical weights (equal to the checkpoint); sharded generation covers every index once and
  matches single-process generation volume by volume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ctsgan.training import train
from ctsgan.training.checkpoint import load_checkpoint
from ctsgan.training.recipe import TrainConfig
from ctsgan.training.recipes import get_recipe
from ctsgan.training.run_log import read_metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread() -> Any:
    """One intra-op thread: fast tiny runs on a shared 2-core machine, and bit-exact CPU arithmetic
    (with several threads, oneDNN / MKL kernels may round differently between processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(model: str, **overrides: Any) -> TrainConfig:
    """The ``tiny`` preset of ``model`` with ``overrides`` applied (validated)."""
    cfg = get_recipe(model).load_config("tiny")
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def train_tiny_run(model: str, root: Path, steps: int, **dataset_kw: Any) -> Path:
    """Train ``model``'s tiny preset for ``steps`` steps (one thread) on a tiny dataset under ``root``;
    returns the run dir ``root / "run"``."""
    from conftest import write_tiny_dataset

    data = write_tiny_dataset(root / "data", **dataset_kw)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, tiny_config(model), data, root / "run", steps=steps, progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def subprocess_env(threads: int = 1) -> dict[str, str]:
    """Environment for child processes: this worktree's ``src`` first on PYTHONPATH, few threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def assert_tensor_dicts_equal(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Nested dicts / lists of tensors and numbers are bit-identical."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{what}: keys differ"
        for k in a:
            assert_tensor_dicts_equal(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{what}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_tensor_dicts_equal(x, y, f"{what}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{what}: tensors differ (max abs diff {(a.float() - b.float()).abs().max().item()})"
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def assert_resume_bit_exact(model: str, config: TrainConfig, data_dir: Path, tmp_path: Path, n: int = 2) -> None:
    """Train 2n steps in one go and n + (resume) n steps; models, optimizers and logs must be identical."""
    straight = train(model, config, data_dir, tmp_path / "straight", steps=2 * n, progress=False)
    half = train(model, config, data_dir, tmp_path / "resumed", steps=n, progress=False)
    assert load_checkpoint(half)["step"] == n
    resumed = train(model, None, data_dir, tmp_path / "resumed", steps=2 * n, resume=True, progress=False)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 2 * n
    keys = ["generator", "discriminator", "opt_g", "opt_d", "ranks"]
    if config.ema_beta > 0:
        assert "generator_ema" in a and "generator_ema" in b, "ema_beta > 0 but no EMA weights in the checkpoint"
        keys.append("generator_ema")
    for key in keys:
        assert_tensor_dicts_equal(a[key], b[key], key)
    # A run that really trained: weights moved away from the initial ones.
    init = get_recipe(model).build_networks(config)
    moved = any(not torch.equal(p, a["generator"][k]) for k, p in init.generator.state_dict().items() if p.is_floating_point())
    assert moved, "generator weights did not change during training"
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(tmp_path / "straight")]
    strip_r = [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(tmp_path / "resumed")]
    assert strip == strip_r, "metrics.jsonl of the resumed run differs from the straight run"


def run_torchrun(script: Path, args: list[str], nproc: int = 2, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``script args`` under ``torchrun --standalone --nproc_per_node nproc`` (CPU, gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script), *args]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


_DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from ctsgan.generation import generate_volumes
    from ctsgan.training import train
    from ctsgan.training.recipes import get_recipe

    model, config_path, data, run, out, steps, n = sys.argv[1:8]
    torch.set_num_threads(1)
    cfg = get_recipe(model).load_config(config_path)

    def dump(nets, ctx):
        state = {"generator": nets.generator.state_dict(), "discriminator": nets.discriminator.state_dict()}
        torch.save(state, Path(run) / f"rank{ctx.rank}.pt")

    ckpt = train(model, cfg, data, run, steps=int(steps), progress=False, on_finish=dump)
    paths = generate_volumes(ckpt, int(n), out, seed=7, fmt="npy", previews=False, device="cpu")
    import os
    rank = int(os.environ["RANK"])
    (Path(out) / f"rank{rank}.json").write_text(json.dumps([p.name for p in paths]))
    """
)


def assert_ddp_consistent(
    model: str, config: TrainConfig, data_dir: Path, tmp_path: Path, steps: int = 3, n_volumes: int = 5
) -> None:
    """2 CPU processes under torchrun: equal weights on both ranks, sharded generation exact."""
    from ctsgan.generation import generate_volumes, volume_name

    script = tmp_path / "ddp_script.py"
    script.write_text(_DDP_SCRIPT)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(config.to_yaml())
    run, out = tmp_path / "run", tmp_path / "gen"
    run_torchrun(script, [model, str(cfg_path), str(data_dir), str(run), str(out), str(steps), str(n_volumes)])
    r0 = torch.load(run / "rank0.pt", weights_only=True)
    r1 = torch.load(run / "rank1.pt", weights_only=True)
    assert_tensor_dicts_equal(r0, r1, "rank0 vs rank1")
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == steps and ckpt["meta"]["world_size"] == 2
    assert_tensor_dicts_equal(r0["generator"], ckpt["generator"], "rank0 vs checkpoint")
    assert len(ckpt["ranks"]) == 2  # both ranks' RNG / sampler states are kept for exact resume
    # The two ranks drew different real batches (per-rank seeds), so equal weights mean averaged gradients.
    assert ckpt["ranks"][0]["sampler"] != ckpt["ranks"][1]["sampler"]
    names = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert not set(names[0]) & set(names[1]), "ranks wrote overlapping volumes"
    expected = [f"{volume_name(7, i)}.npy" for i in range(n_volumes)]
    assert sorted(names[0] + names[1]) == expected
    assert sorted(p.name for p in out.glob("*.npy")) == expected
    # Sharding does not change any volume: compare with one process generating all of them.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same thread count as the torchrun ranks: bit-identical convolutions
    try:
        single = generate_volumes(run, n_volumes, tmp_path / "single", seed=7, fmt="npy", previews=False,
                                  device="cpu", rank=0, world_size=1)
    finally:
        torch.set_num_threads(threads)
    for p in single:
        np.testing.assert_array_equal(np.load(p), np.load(out / p.name))
