"""Injector / eraser: networks, loss, training loop (checkpoints, bit-exact resume), inject and erase."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.config import ConfigError, resolve_config
from ctsgan.data.dataset import ManifestRow, Nodule, PreparedDataset, write_manifest, write_nodules
from ctsgan.data.hu import unit_to_hu
from ctsgan.io.atomic import atomic_save_npy
from ctsgan.nodules.apply import erase_dataset, inject_dataset
from ctsgan.nodules.erase import erase_nodules
from ctsgan.nodules.inject import inject_nodules
from ctsgan.nodules.inpainter import InpaintConfig, Inpainter, load_inpainter, parse_kind
from ctsgan.nodules.losses import region_l1, region_weights, weighted_l1
from ctsgan.nodules.networks import InpaintGenerator, build_discriminator
from ctsgan.nodules.paste import blend_weight
from ctsgan.nodules.train import VoiSampler, train_inpainter
from ctsgan.nodules.voi import ellipsoid_mask, extract_voi

SIZE = 32
LUNG_RADII = (14.0, 12.0, 13.0)


def _lung_volume(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Body (40 HU) around one lung ellipsoid (-850 HU), noise sd 20. (int16 volume, bool lung)."""
    lung = ellipsoid_mask(size, LUNG_RADII)
    vol = np.where(lung, -850.0, 40.0) + rng.normal(0, 20, (size,) * 3)
    return vol.astype(np.int16), lung


def write_lung_dataset(root: Path, n: int = 3, seed: int = 0, nodule_d: float = 6.0) -> Path:
    """A prepared dataset of ``n`` lung volumes, each with 3 soft-tissue (30 HU) spheres in nodules.csv."""
    rng = np.random.default_rng(seed)
    rows, nods = [], []
    for i in range(n):
        vid = f"lung{i}"
        vol, _ = _lung_volume(rng)
        for off in ((0, 0, -7), (0, 0, 7), (-7, 0, 0)):  # three nodules, 14 voxels apart
            c = SIZE // 2 + np.asarray(off) + rng.integers(-1, 2, 3)
            ball = ellipsoid_mask(SIZE, (nodule_d / 2,) * 3, c)
            vol[ball] = (30 + rng.normal(0, 20, int(ball.sum()))).astype(np.int16)
            nods.append(Nodule(vid, *(float(v) for v in c), nodule_d, nodule_d))
        atomic_save_npy(root / "volumes" / f"{vid}.npy", vol)
        rows.append(ManifestRow.as_is(vid, (SIZE,) * 3, source="test", n_nodules=3))
    write_manifest(root / "manifest.csv", rows)
    write_nodules(root / "nodules.csv", nods)
    return root


def tiny_cfg(model: str, **kw: object) -> InpaintConfig:
    return resolve_config(InpaintConfig, "tiny", model).model_copy(update=kw)


@pytest.fixture(scope="module")
def lung_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lung_dataset(tmp_path_factory.mktemp("lungds"))


@pytest.fixture(scope="module")
def injector(lung_ds: Path, tmp_path_factory: pytest.TempPathFactory) -> Inpainter:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("inj")
    cfg = tiny_cfg("injector", lr_g=5e-3, batch_size=4, checkpoint_every=1000)
    return load_inpainter(train_inpainter("injector", cfg, lung_ds, run, steps=150, progress=False))


@pytest.fixture(scope="module")
def eraser(lung_ds: Path, tmp_path_factory: pytest.TempPathFactory) -> Inpainter:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("era")
    cfg = tiny_cfg("eraser", lr_g=2e-3, batch_size=4, checkpoint_every=1000, eraser_min_diameter_mm=4.0,
                   eraser_max_diameter_mm=8.0)
    return load_inpainter(train_inpainter("eraser", cfg, lung_ds, run, steps=100, progress=False))


@pytest.mark.parametrize(
    ("channels", "strides", "d_layers", "size", "patches"),
    # PatchGAN sizes by hand (k=4, p=1): stride-2 convs halve, the stride-1 ones take 1 off
    # 16: 8 -> 4 -> 3 -> 2;  32: 16 -> 8 -> 4 -> 3 -> 2
    [((8, 16, 32), (2, 2), 2, 16, 2), ((16, 32, 64, 128), (2, 2, 2), 3, 32, 2)],
)
def test_network_shapes(channels, strides, d_layers, size, patches) -> None:
    g = InpaintGenerator(channels, strides)
    d = build_discriminator(8, d_layers)
    x = torch.rand(2, 1, size, size, size) * 2 - 1
    m = torch.zeros(2, 1, size, size, size)
    y = g(x, m)
    assert y.shape == (2, 1, size, size, size) and y.abs().max() <= 1
    assert d(y, x, m).shape == (2, 1, patches, patches, patches)
    with pytest.raises(ValueError, match="strides"):
        InpaintGenerator((8, 16), (2, 2))


def test_region_weighted_l1_by_hand() -> None:
    nod = torch.tensor([1.0, 0, 0, 0]).view(1, 1, 4, 1, 1)
    mask = torch.tensor([1.0, 1, 0, 0]).view(1, 1, 4, 1, 1)
    w = region_weights(nod, mask, 5.0, 2.0, 1.0)
    assert w.flatten().tolist() == [5.0, 2.0, 1.0, 1.0]
    fake = torch.tensor([0.5, 0.0, 1.0, 0.0]).view(1, 1, 4, 1, 1)
    real = torch.zeros(1, 1, 4, 1, 1)
    assert float(weighted_l1(fake, real, w)) == pytest.approx((5 * 0.5 + 1 * 1.0) / 9)


def test_region_l1_means_each_region_by_hand() -> None:
    # 1 nodule voxel, 2 boundary voxels, 5 context voxels: each region's mean counts, not its size
    nod = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]).view(1, 1, 8, 1, 1)
    mask = torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0]).view(1, 1, 8, 1, 1)
    fake = torch.tensor([0.6, 0.2, 0.0, 0.5, 0, 0, 0, 0]).view(1, 1, 8, 1, 1)
    real = torch.zeros(1, 1, 8, 1, 1)
    # nodule mean 0.6, boundary mean 0.1, context mean 0.1
    assert float(region_l1(fake, real, nod, mask, 10.0, 2.0, 1.0)) == pytest.approx((10 * 0.6 + 2 * 0.1 + 0.1) / 13)
    # a VOI without a nodule region adds nothing for it
    assert float(region_l1(fake, real, torch.zeros_like(nod), mask, 10.0, 2.0, 1.0)) == pytest.approx(
        (2 * (0.6 + 0.2 + 0.0) / 3 + 0.1) / 13)


def test_region_l1_counts_a_small_nodule_as_much_as_a_large_one() -> None:
    # VOI 0: a 1-voxel nodule painted 0.8 off; VOI 1: a 7-voxel nodule painted exactly.
    # Pooled over the batch the small nodule would be 0.8 / 8 = 0.1; per VOI it is (0.8 + 0) / 2.
    nod = torch.zeros(2, 1, 8, 1, 1)
    nod[0, 0, 0] = 1.0
    nod[1, 0, :7] = 1.0
    mask = nod.clone()
    fake = torch.zeros(2, 1, 8, 1, 1)
    fake[0, 0, 0] = 0.8
    real = torch.zeros(2, 1, 8, 1, 1)
    assert float(region_l1(fake, real, nod, mask, 1.0, 0.0, 0.0)) == pytest.approx(0.4)
    # a VOI whose nodule region is empty does not dilute the others' mean
    nod[1] = 0.0
    assert float(region_l1(fake, real, nod, nod.clone(), 1.0, 0.0, 0.0)) == pytest.approx(0.8)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="injector"):
        parse_kind("painter")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: injector\nvoi_size: 20\n")
    with pytest.raises(ConfigError, match="voi_size"):
        resolve_config(InpaintConfig, str(bad), "injector")
    bad.write_text("model: injector\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        resolve_config(InpaintConfig, str(bad), "injector")
    with pytest.raises(ConfigError, match="known presets"):
        resolve_config(InpaintConfig, "huge", "eraser")
    for preset in ("tiny", "cpu64", "paper224"):
        for model in ("injector", "eraser"):
            cfg = resolve_config(InpaintConfig, preset, model)
            assert cfg.model == model and cfg.max_diameter_vox() > 1


def test_resume_is_bit_exact(lung_ds: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = tiny_cfg("eraser", checkpoint_every=2)
    straight = train_inpainter("eraser", cfg, lung_ds, tmp_path / "a", steps=4, progress=False)
    train_inpainter("eraser", cfg, lung_ds, tmp_path / "b", steps=2, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train_inpainter("eraser", cfg, lung_ds, tmp_path / "b", steps=4, progress=False)
    resumed = train_inpainter("eraser", cfg, lung_ds, tmp_path / "b", steps=4, resume=True, progress=False)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["step"] == b["step"] == 4
    for part in ("generator", "discriminator"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert (tmp_path / "b" / "config.yaml").exists()
    logs = {r: [json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in "ab"}
    # log_every=5: each run logs its last step; the resumed run keeps its step-2 row once
    assert [h["step"] for h in logs["a"]] == [4] and [h["step"] for h in logs["b"]] == [2, 4]
    assert logs["a"][0]["loss_g"] == logs["b"][1]["loss_g"] and logs["a"][0]["loss_d"] == logs["b"][1]["loss_d"]
    with pytest.raises(ValueError, match="of model 'eraser', not 'injector'"):
        train_inpainter("injector", cfg, lung_ds, tmp_path / "b", steps=6, resume=True, progress=False)


def test_injector_moves_real_nodules_into_new_lung_contexts(lung_ds: Path) -> None:
    cfg = tiny_cfg("injector", inject_move_prob=1.0, augment=False)
    sampler = VoiSampler(PreparedDataset(lung_ds, split="train"), cfg, parse_kind("injector"))
    ds = PreparedDataset(lung_ds, split="train")
    originals = [extract_voi(ds.load(i), (n.z, n.y, n.x), cfg.voi_size).astype(np.float32)
                 for i, r in enumerate(ds.rows) for n in ds.nodules(r.id)]
    x, y, nod, mask = sampler.batch(np.random.default_rng(3), 6)
    assert torch.equal(x, y)
    hu = unit_to_hu(x[:, 0].numpy(), *cfg.hu_window)
    for k in range(hu.shape[0]):
        inside, outside = nod[k, 0].numpy() > 0, mask[k, 0].numpy() == 0
        # the nodule sphere is a real nodule VOI's, voxel for voxel; the context outside the mask is not its own
        src = [o for o in originals if np.allclose(o[inside], hu[k][inside], atol=0.5)]
        assert src, "nodule voxels do not come from a dataset nodule"
        assert not any(np.allclose(o[outside], hu[k][outside], atol=0.5) for o in src)
        assert hu[k][inside].mean() > -100  # the 30 HU nodules


def test_injector_needs_nodules(make_tiny_dataset, tmp_path: Path) -> None:
    ds = make_tiny_dataset(n=2, size=16)
    write_nodules(ds / "nodules.csv", [])
    with pytest.raises(ValueError, match="no nodules"):
        train_inpainter("injector", tiny_cfg("injector"), ds, tmp_path / "run", steps=1, progress=False)


def test_injected_nodule_is_soft_tissue_and_outside_is_untouched(injector: Inpainter) -> None:
    rng = np.random.default_rng(5)
    hu, lung = _lung_volume(rng)
    new, placed = inject_nodules(hu, lung, injector, (1.0, 1.0, 1.0), np.random.default_rng(0), 6.0, 2)
    assert len(placed) == 2 and all(d == 6.0 for _, d in placed)
    changed = np.zeros(hu.shape, dtype=bool)
    depth_ok = []
    for c, d in placed:
        _, mask = injector.masks(d, (1.0, 1.0, 1.0))
        w = blend_weight(mask, injector.config.blend_vox)
        zone = np.zeros(hu.shape, dtype=bool)
        s = injector.voi_size
        lo = [int(v) - s // 2 for v in c]
        sl_v = tuple(slice(max(a, 0), min(a + s, SIZE)) for a in lo)
        sl_w = tuple(slice(max(a, 0) - a, min(a + s, SIZE) - a) for a in lo)
        zone[sl_v] = w[sl_w] > 0
        changed |= zone
        core = ellipsoid_mask(hu.shape, (d / 4,) * 3, c)
        # solid nodules are soft tissue; the training nodules here are 30 HU. Over training seeds 0-3
        # (a stand-in for CPU-to-CPU drift) the cores measured -90..+32 HU; the band leaves >= 200 HU
        # each side and still sits 550 HU above the -850 HU lung
        assert -300 < new[core].mean() < 250, f"injected core {new[core].mean():.0f} HU is not soft tissue"
        assert new[core].mean() > hu[core].mean() + 500
        # centre inside the lung, at least the radius from its wall
        depth_ok.append(lung[tuple(int(v) for v in c)])
    assert all(depth_ok)
    assert np.array_equal(new[~changed], hu[~changed])
    with pytest.raises(ValueError, match="injector"):
        erase_nodules(hu, [((16, 16, 16), 5.0)], injector, (1.0, 1.0, 1.0))


def test_inject_and_erase_datasets(injector: Inpainter, eraser: Inpainter, lung_ds: Path, tmp_path: Path) -> None:
    rep = inject_dataset(lung_ds, tmp_path / "inj", injector, diameter_mm=4.0, count=1, seed=1, progress=False)
    assert rep.volumes == 3 and rep.nodules_before == 9 and rep.nodules_after == 12 and not rep.skipped
    out = PreparedDataset(tmp_path / "inj")
    src = PreparedDataset(lung_ds)
    assert out.ids == src.ids and all(r.n_nodules == 4 for r in out.rows)
    for vid in out.ids:  # new nodules keep clear of the ones already there: r1 + r2 + 2 mm
        added = [n for n in out.nodules(vid) if n.diameter_mm == 4.0]
        assert len(added) == 1
        for old in src.nodules(vid):
            gap = np.linalg.norm([added[0].z - old.z, added[0].y - old.y, added[0].x - old.x])
            assert gap > (4.0 + old.diameter_mm) / 2 + 2.0
    vol = out.load(0)
    assert vol.dtype == np.int16 and vol.shape == (SIZE,) * 3
    assert not np.array_equal(vol, src.load(0))
    # same seed -> same volumes
    inject_dataset(lung_ds, tmp_path / "inj2", injector, diameter_mm=4.0, count=1, seed=1, progress=False)
    assert np.array_equal(PreparedDataset(tmp_path / "inj2").load(2), out.load(2))
    rep = erase_dataset(tmp_path / "inj", tmp_path / "era", eraser, progress=False)
    assert rep.nodules_before == 12 and rep.nodules_after == 0
    era = PreparedDataset(tmp_path / "era")
    assert era.nodules("lung0") == [] and not any(r.has_nodule for r in era.rows)
    assert (tmp_path / "era" / "previews" / "lung0.png").exists()


def test_eraser_brings_the_healthy_volume_back(eraser: Inpainter) -> None:
    rng = np.random.default_rng(11)
    healthy, _ = _lung_volume(rng)
    hu = healthy.copy()
    nodules = [((16.0, 16.0, 9.0), 6.0), ((16.0, 16.0, 23.0), 5.0)]
    region = np.zeros(hu.shape, dtype=bool)
    for c, d in nodules:
        ball = ellipsoid_mask(SIZE, (d / 2,) * 3, c)
        hu[ball] = 30
        region |= ball
    out = erase_nodules(hu, nodules, eraser, (1.0, 1.0, 1.0))
    l1_in = np.abs(hu[region].astype(float) - healthy[region]).mean()
    l1_out = np.abs(out[region].astype(float) - healthy[region]).mean()
    assert l1_in > 800 and l1_out < 0.5 * l1_in
    with pytest.raises(ValueError, match="eraser"):
        inject_nodules(hu, np.ones(hu.shape, bool), eraser, (1.0, 1.0, 1.0), rng, 4.0, 1)


def test_cli_train_inject_erase(lung_ds: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    run = CliRunner()
    res = run.invoke(app, ["nodules", "train", "--model", "eraser", "--data", str(lung_ds), "--out",
                           str(tmp_path / "era"), "--config", "tiny", "--dry-run"])
    assert res.exit_code == 0 and "model: eraser" in res.output and "voi_size: 16" in res.output
    for model in ("injector", "eraser"):
        res = run.invoke(app, ["nodules", "train", "--model", model, "--data", str(lung_ds), "--out",
                               str(tmp_path / model), "--config", "tiny", "--steps", "1"])
        assert res.exit_code == 0, res.output
        assert (tmp_path / model / "checkpoints" / "step-00000001.pt").exists()
    res = run.invoke(app, ["nodules", "inject", "--checkpoint", str(tmp_path / "injector"), "--in", str(lung_ds),
                           "--out", str(tmp_path / "inj"), "--diameter", "4", "--count", "2"])
    assert res.exit_code == 0, res.output
    assert "nodules 9 -> 15" in res.output
    res = run.invoke(app, ["nodules", "erase", "--checkpoint", str(tmp_path / "eraser"), "--in", str(tmp_path / "inj"),
                           "--out", str(tmp_path / "era_out")])
    assert res.exit_code == 0, res.output
    assert "nodules 15 -> 0" in res.output and PreparedDataset(tmp_path / "era_out").nodules("lung1") == []
    res = run.invoke(app, ["nodules", "train", "--model", "painter", "--data", str(lung_ds), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "injector" in str(res.exception)


def test_inpainters_train_on_the_shared_loop(lung_ds: Path, tmp_path: Path) -> None:
    """One checkpoint format with every model (``ctsgan train --model eraser`` is the same run), a VOI
    preview from the recipe hook, the loop's scalars in metrics.jsonl, and no volumes to sample."""
    from ctsgan.training import train
    from ctsgan.training.checkpoint import CHECKPOINT_FORMAT, list_checkpoints
    from ctsgan.training.recipes import get_recipe

    torch.set_num_threads(1)
    cfg = tiny_cfg("eraser", checkpoint_every=2)
    a = train_inpainter("eraser", cfg, lung_ds, tmp_path / "a", steps=2, progress=False)
    b = train("eraser", cfg, lung_ds, tmp_path / "b", steps=2, progress=False)
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa["format"] == CHECKPOINT_FORMAT and sa["model"] == "eraser" and [s for s, _ in list_checkpoints(tmp_path / "a")] == [2]
    for k in sa["generator"]:
        assert torch.equal(sa["generator"][k], sb["generator"][k])
    assert (tmp_path / "a" / "previews" / "step-00000002.png").stat().st_size > 0
    row = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss_d", "loss_g", "g/l1", "g/adv", "g/l1_nodule_hu"} <= set(row)
    with pytest.raises(ValueError, match="does not generate volumes"):
        get_recipe("eraser").sample_volume(InpaintGenerator([4, 8], [2], 1), cfg, 0, torch.device("cpu"))


def test_checkpoints_of_the_former_inpainter_loop_load_but_do_not_resume(lung_ds: Path, tmp_path: Path) -> None:
    """A run dir of the inpainters' own former loop (checkpoints/latest.pt, beta1/hu_min/ckpt_every
    config keys): its generator loads for inject / erase unchanged; --resume is a clear error."""
    from ctsgan.nodules.inpainter import build_generator

    cfg = tiny_cfg("injector")
    old_cfg = {k: v for k, v in cfg.model_dump(mode="json").items()
               if k not in ("betas", "hu_window", "checkpoint_every", "loss", "penalty", "penalty_weight", "penalty_every",
                            "d_steps", "ema_beta", "keep_last", "preview_every", "preview_seeds", "tensorboard", "device")}
    old_cfg |= {"beta1": 0.5, "beta2": 0.999, "hu_min": -1000.0, "hu_max": 500.0, "ckpt_every": 10}
    torch.manual_seed(3)
    gen = build_generator(cfg)
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"config": old_cfg, "step": 10, "generator": gen.state_dict(), "numpy_rng": {}}, run / "checkpoints" / "latest.pt")
    inp = load_inpainter(run)
    assert inp.config.hu_window == (-1000.0, 500.0) and inp.config.betas == (0.5, 0.999)
    for k, v in gen.state_dict().items():
        assert torch.equal(inp.generator.state_dict()[k], v)
    with pytest.raises(ValueError, match="former training loop.*cannot be resumed"):
        train_inpainter("injector", cfg, lung_ds, run, steps=12, resume=True, progress=False)


def test_resume_with_another_config_names_the_keys(lung_ds: Path, tmp_path: Path) -> None:
    """``nodules train --resume`` with a config that differs from the run's (other than steps) is
    refused, naming the keys; without --config it keeps the run's own."""
    from typer.testing import CliRunner

    from ctsgan.cli import app

    torch.set_num_threads(1)
    cfg = tiny_cfg("eraser", checkpoint_every=1)
    train_inpainter("eraser", cfg, lung_ds, tmp_path / "run", steps=1, progress=False)
    with pytest.raises(ValueError, match=r"differs from the run's config in 1 key\(s\): lr_g: 0.0002 -> 0.001"):
        train_inpainter("eraser", cfg.model_copy(update={"lr_g": 1e-3}), lung_ds, tmp_path / "run", steps=2, resume=True,
                        progress=False)
    res = CliRunner().invoke(app, ["nodules", "train", "--model", "eraser", "--data", str(lung_ds), "--out",
                                   str(tmp_path / "run"), "--resume", "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert torch.load(tmp_path / "run" / "checkpoints" / "step-00000002.pt", weights_only=True)["config"]["voi_size"] == 16


_INPAINT_DDP = """
import sys
from pathlib import Path
import torch
from ctsgan.config import resolve_config
from ctsgan.nodules.inpainter import InpaintConfig
from ctsgan.training import train

data, run = sys.argv[1:3]
torch.set_num_threads(1)
cfg = resolve_config(InpaintConfig, "tiny", "eraser").model_copy(update={"checkpoint_every": 2, "device": "cpu"})

def dump(nets, ctx):
    torch.save(nets.generator.state_dict(), Path(run) / f"rank{ctx.rank}.pt")

train("eraser", cfg, data, run, steps=2, progress=False, on_finish=dump)
"""


def test_the_eraser_trains_under_torchrun(lung_ds: Path, tmp_path: Path) -> None:
    """Two CPU processes (gloo): one checkpoint with both ranks' sampler states, which differ (each
    rank drew its own VOIs) while the weights are one set (averaged gradients)."""
    from ctsgan.training.checkpoint import load_checkpoint
    from training_helpers import run_torchrun

    script = tmp_path / "ddp_eraser.py"
    script.write_text(_INPAINT_DDP)
    run_torchrun(script, [str(lung_ds), str(tmp_path / "run")])
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 2 and ckpt["model"] == "eraser" and ckpt["meta"]["world_size"] == 2
    assert len(ckpt["ranks"]) == 2 and ckpt["ranks"][0]["sampler"] != ckpt["ranks"][1]["sampler"]
    r0, r1 = (torch.load(tmp_path / "run" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in r0.items():
        assert torch.equal(v, r1[k]), f"generator.{k} differs between ranks"
        assert torch.equal(v, ckpt["generator"][k])
