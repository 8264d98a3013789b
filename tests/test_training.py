"""The shared training loop with the CT-SGAN recipe: resume, checkpoints, NaN stop, run dir, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ctsgan.config import ConfigError
from ctsgan.training import TrainingDivergedError, train
from ctsgan.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from ctsgan.training.recipes import get_recipe, recipe_names
from ctsgan.training.recipes.ctsgan import CTSGANRecipe, CTSGANSampler
from ctsgan.training.run_log import read_metrics
from training_helpers import (
    REPO,
    assert_resume_bit_exact,
    assert_tensor_dicts_equal,
    one_thread,  # noqa: F401 (fixture)
    subprocess_env,
    tiny_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registry_lists_ctsgan_and_rejects_unknown() -> None:
    assert "ctsgan" in recipe_names()
    with pytest.raises(ValueError, match="model must be one of"):
        get_recipe("stylegan9")


@pytest.mark.parametrize(("loss", "penalty"), [("js", "r1"), ("wgan", "wgan-gp")])
def test_resume_is_bit_exact(make_tiny_dataset: Callable[..., Path], tmp_path: Path, loss: str, penalty: str) -> None:
    cfg = tiny_config("ctsgan", loss=loss, penalty=penalty, penalty_weight=1.0 if penalty == "r1" else 10.0)
    assert_resume_bit_exact("ctsgan", cfg, make_tiny_dataset(), tmp_path, n=2)


def test_ema_follows_the_generator(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """The EMA copy moves with G (not frozen at init, not equal to G) and generation samples from it."""
    from ctsgan.generation.generate import load_generator

    cfg = tiny_config("ctsgan", ema_beta=0.5, checkpoint_every=4)
    ckpt = train("ctsgan", cfg, make_tiny_dataset(), tmp_path / "run", steps=4, progress=False)
    state = load_checkpoint(ckpt)
    torch.manual_seed(cfg.seed)  # the trainer's initial weights
    init = get_recipe("ctsgan").build_networks(cfg).generator.state_dict()
    key = "g_slice.main.0.weight"
    ema, g = state["generator_ema"][key], state["generator"][key]
    assert not torch.equal(ema, init[key]) and not torch.equal(ema, g)
    # between the initial and the current weights, closer to the current ones (beta 0.5 ramp)
    assert (ema - g).abs().mean() < (init[key] - g).abs().mean()
    loaded = load_generator(ckpt, optimize=False)
    torch.testing.assert_close(loaded.generator.state_dict()[key], ema)


def test_head_run_trains_and_generates_in_channels_last(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """A run with ``g_head`` (2D G_slice and a 3D head in one module) trains, keeps the head in its
    checkpoint, and ``generate``'s loader (folded, channels-last: 2D and 3D weights each in their
    layout) writes what the plain loaded generator renders."""
    import numpy as np

    from ctsgan.generation import generate_volumes, volume_seed
    from ctsgan.generation.generate import load_generator

    cfg = tiny_config("ctsgan", g_head=4)
    ckpt = train("ctsgan", cfg, make_tiny_dataset(), tmp_path / "run", steps=3, progress=False)
    assert float(load_checkpoint(ckpt)["generator"]["head.net.4.weight"].abs().sum()) > 0  # trained from 0
    fast = load_generator(ckpt)
    assert fast.generator.head.net[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain = load_generator(ckpt, channels_last=False, optimize=False)
    (path,) = generate_volumes(ckpt, 1, tmp_path / "gen", seed=0, fmt="npy")
    want = plain.sample(volume_seed(0, 0))
    assert np.abs(np.load(path).astype(np.int32) - want).max() <= 1


def test_lazy_penalty_schedule_reaches_the_d_step(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``penalty_every`` k, D update i gets the penalty weight gamma * k when i % k == 0, else 0
    (StyleGAN2's lazy R1: the same average weight), counted across steps and ``d_steps``."""
    seen: list[float] = []
    real_d_step = CTSGANRecipe.d_step

    def spy(self, nets, real, config, noise, *, penalty_weight):  # type: ignore[no-untyped-def]
        seen.append(penalty_weight)
        return real_d_step(self, nets, real, config, noise, penalty_weight=penalty_weight)

    monkeypatch.setattr(CTSGANRecipe, "d_step", spy)
    cfg = tiny_config("ctsgan", penalty_weight=0.5, penalty_every=3, d_steps=2)
    train("ctsgan", cfg, make_tiny_dataset(), tmp_path / "run", steps=4, progress=False)
    assert seen == [1.5, 0.0, 0.0, 1.5, 0.0, 0.0, 1.5, 0.0]


def test_zero_penalty_weight_skips_the_penalty() -> None:
    """discriminator_objective with weight 0 adds no penalty and needs no input gradient; with
    weight w it adds w times the weight-1 penalty."""
    from ctsgan.losses.gan import discriminator_objective

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    critic = lambda x: net(x).squeeze(1)  # noqa: E731
    _, s0 = discriminator_objective(critic, real, fake, "js", "r1", 0.0)
    _, s1 = discriminator_objective(critic, real, fake, "js", "r1", 1.0)
    _, s4 = discriminator_objective(critic, real, fake, "js", "r1", 4.0)
    assert float(s0["penalty"]) == 0.0 and not real.requires_grad
    assert float(s1["penalty"]) > 0
    assert float(s4["penalty"]) == pytest.approx(4 * float(s1["penalty"]), rel=1e-6)


def test_resume_is_bit_exact_with_every_option(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """The options beyond the paper (position inputs, minibatch std, EMA of G) resume exactly too."""
    cfg = tiny_config(
        "ctsgan", position_dim=4, slab_position=True, d_position_channels=4, mbstd_group=2, ema_beta=0.9,
        penalty_every=2, d_windows=[(-200.0, 200.0)], augment=["translation", "cutout"], lecam_weight=0.3,
    )
    assert_resume_bit_exact("ctsgan", cfg, make_tiny_dataset(), tmp_path, n=2)


def test_lecam_anchors_live_in_the_discriminator_checkpoint(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    """lecam_weight > 0: each D keeps its anchors in the checkpoint (moved off 0 by training) and
    logs its LeCam term; off, the discriminator's state has no such keys (old checkpoints load)."""
    keys = {f"lecam_{d}.{a}" for d in ("slice", "slab") for a in ("real", "fake")}
    ck = load_checkpoint(train("ctsgan", tiny_config("ctsgan", lecam_weight=0.3), make_tiny_dataset(), tmp_path / "on",
                               steps=3, progress=False))
    assert keys <= set(ck["discriminator"]) and all(ck["discriminator"][k].item() != 0 for k in keys)
    rows = [r for r in read_metrics(tmp_path / "on") if "d_slab/lecam" in r]
    assert rows and all(r["d_slice/lecam"] >= 0 and r["d_slab/lecam"] >= 0 for r in rows)
    off = get_recipe("ctsgan").build_networks(tiny_config("ctsgan")).discriminator.state_dict()
    assert not any(k.startswith("lecam") for k in off)


def test_quality_snapshots_are_logged_and_leave_training_unchanged(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    """quality_every logs the structure metrics of sampled volumes at its steps and the end, and a run
    with snapshots ends with the same weights as one without (sampling touches no training state)."""
    data = make_tiny_dataset()
    base = tiny_config("ctsgan", ema_beta=0.0, preview_every=0)  # snapshots sample the live G
    with_q = base.model_copy(update={"quality_every": 2, "quality_volumes": 3})
    a = load_checkpoint(train("ctsgan", base, data, tmp_path / "a", steps=5, progress=False))
    b = load_checkpoint(train("ctsgan", with_q, data, tmp_path / "b", steps=5, progress=False))
    assert_tensor_dicts_equal(a["generator"], b["generator"], "generator")
    assert_tensor_dicts_equal(a["discriminator"], b["discriminator"], "discriminator")
    snaps = [r for r in read_metrics(tmp_path / "b") if "quality/z_profile_error" in r]
    assert [r["step"] for r in snaps] == [2, 4, 5]
    for r in snaps:
        assert 0 <= r["quality/z_profile_error"] < 100 and r["quality/diversity_ratio"] >= 0
        assert r["quality/train_nearest_other_hu"] > 0 and r["quality/nearest_train_hu"] >= 0
        assert r["quality/copy_ratio"] == pytest.approx(r["quality/nearest_train_hu"] / r["quality/train_nearest_other_hu"])
    assert not [r for r in read_metrics(tmp_path / "a") if "quality/z_profile_error" in r]


def test_quality_snapshots_need_a_volume_generator(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    cfg = tiny_config("injector", quality_every=2)
    with pytest.raises(ValueError, match="does not generate volumes: quality_every must be 0"):
        train("injector", cfg, make_tiny_dataset(), tmp_path / "run", steps=2, progress=False)


def test_run_dir_contents_and_keep_last(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    cfg = tiny_config("ctsgan", checkpoint_every=1, keep_last=2, log_every=2, preview_every=3, tensorboard=True)
    run = tmp_path / "run"
    last = train("ctsgan", cfg, make_tiny_dataset(), run, steps=5, progress=False)
    assert [s for s, _ in list_checkpoints(run)] == [4, 5]
    assert last == latest_checkpoint(run)
    assert (run / "config.yaml").read_text() == cfg.model_copy(update={"steps": 5}).to_yaml()
    assert [r["step"] for r in read_metrics(run)] == [2, 4, 5]
    assert {"loss_d", "loss_g", "d_slice/penalty", "d_slab/adv"} <= set(read_metrics(run)[0])
    assert sorted(p.name for p in (run / "previews").iterdir()) == ["step-00000003.png", "step-00000005.png"]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    state = load_checkpoint(last)
    assert state["meta"]["size"] == 16 and state["meta"]["spacing"] == [1.0, 1.0, 1.0]


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_tiny_dataset()
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train("ctsgan", None, data, tmp_path / "empty", steps=2, resume=True, progress=False)
    train("ctsgan", tiny_config("ctsgan"), data, tmp_path / "run", steps=1, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train("ctsgan", tiny_config("ctsgan"), data, tmp_path / "run", steps=2, progress=False)


def test_dataset_size_mismatch_is_named(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_tiny_dataset(size=32)
    with pytest.raises(ValueError, match="32\\^3 but config size is 16"):
        train("ctsgan", tiny_config("ctsgan"), data, tmp_path / "run", steps=1, progress=False)


def test_bad_config_value_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("model: ctsgan\nsize: 16\nloss: hinge\n")
    with pytest.raises(ConfigError, match="loss"):
        get_recipe("ctsgan").load_config(p)


def test_nan_loss_stops_with_last_good_checkpoint(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_d_step = CTSGANRecipe.d_step
    calls = {"n": 0}

    def poisoned(self, nets, real, config, noise, *, penalty_weight):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss, s = real_d_step(self, nets, real, config, noise, penalty_weight=penalty_weight)
        return (loss * float("nan"), s) if calls["n"] == 3 else (loss, s)

    monkeypatch.setattr(CTSGANRecipe, "d_step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"discriminator loss is not finite .* step 3.*step-00000002\.pt"):
        train("ctsgan", tiny_config("ctsgan", checkpoint_every=2), make_tiny_dataset(), run, steps=6, progress=False)
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert load_checkpoint(run)["step"] == 2


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    import ctsgan.io.atomic as atomic
    from ctsgan.training import train
    from ctsgan.training.recipes import get_recipe

    data, run = sys.argv[1:3]
    torch.set_num_threads(1)
    cfg = get_recipe("ctsgan").load_config("tiny")
    cfg.checkpoint_every = 2
    train("ctsgan", cfg, data, run, steps=2, progress=False)

    original = atomic.atomic_write_bytes

    def half_then_hang(path, data):
        if not str(path).endswith(".pt"):
            return original(path, data)

        def writer(fh):
            fh.write(data[: len(data) // 2])
            fh.flush()
            print("HALF", flush=True)
            time.sleep(120)
        return atomic.atomic_write_with(path, writer)

    atomic.atomic_write_bytes = half_then_hang  # the checkpoint write of step 4 is killed midway
    train("ctsgan", None, data, run, steps=4, resume=True, progress=False)
    """
)


def test_checkpoint_write_killed_midway_keeps_previous(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data, run = make_tiny_dataset(), tmp_path / "run"
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(run)], env=subprocess_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "HALF", f"child did not reach the write: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers, "the kill happened before the temp file existed"
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert load_checkpoint(run)["step"] == 2
    # resuming from the surviving checkpoint gives exactly the run that was never interrupted
    torch.set_num_threads(1)
    resumed = train("ctsgan", None, data, run, steps=4, resume=True, progress=False)
    cfg = tiny_config("ctsgan", checkpoint_every=2)
    straight = train("ctsgan", cfg, data, tmp_path / "straight", steps=4, progress=False)
    assert_tensor_dicts_equal(load_checkpoint(resumed)["generator"], load_checkpoint(straight)["generator"], "generator")


def test_sampler_positions_and_ranges(make_tiny_dataset: Callable[..., Path]) -> None:
    from ctsgan.data.dataset import PreparedDataset

    cfg = tiny_config("ctsgan")
    ds = PreparedDataset(make_tiny_dataset(), split="train")
    batch = CTSGANSampler(ds, (0, 0), cfg).sample(3)  # type: ignore[arg-type]
    assert batch["slab"].shape == (3, 1, 4, 16, 16)
    assert batch["slices"].shape == (6, 3, 16, 16)
    assert batch["positions"].min() >= 0 and batch["positions"].max() <= 13
    assert batch["slab"].min() >= -1 and batch["slab"].max() <= 1
    # a real 3-slice at position k holds volume slices k, k+1, k+2 of one of the training volumes
    from ctsgan.data.hu import hu_to_unit

    vols = [hu_to_unit(ds.load(i)) for i in range(len(ds))]
    k = int(batch["positions"][0])
    assert any(torch.equal(batch["slices"][0], torch.from_numpy(v[k : k + 3])) for v in vols)


def test_cli_train_and_dry_run(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--model", "ctsgan", "--config", "tiny", "--data", str(tmp_path), "--out",
                              str(tmp_path / "r"), "--dry-run", "--steps", "7"])
    assert res.exit_code == 0 and "steps: 7" in res.output
    data = make_tiny_dataset()
    res = runner.invoke(app, ["train", "--config", "tiny", "--data", str(data), "--out", str(tmp_path / "r"),
                              "--steps", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "r")["step"] == 2
    res = runner.invoke(app, ["train", "--model", "nope", "--config", "tiny", "--data", str(data), "--out",
                              str(tmp_path / "x")])
    assert res.exit_code == 1 and "model must be one of" in res.output


def test_time_limit_stops_with_a_checkpoint(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    last = train("ctsgan", tiny_config("ctsgan", checkpoint_every=100), make_tiny_dataset(), run, steps=1000,
                 progress=False, time_limit_s=0.0)
    assert load_checkpoint(last)["step"] == 1  # stopped after the first step, and saved it
    assert (run / "previews" / "step-00000001.png").exists()
