"""Nodule-detection experiment: input scaling, Figure 3(a) dataset construction, the grid and resume."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ctsgan.data.dataset import read_manifest, write_manifest
from ctsgan.experiments.nodule_detection import (
    CellResult,
    DetectionConfig,
    InputView,
    NoduleSpec,
    Origin,
    Regime,
    build_real_set,
    build_synthetic_set,
    hu_to_classifier_input,
    make_view,
    parse_regime,
    patients_crossing_splits,
    read_cell_results,
    run_experiment,
    summary_table,
    voi_classifier_input,
)

NODULE_HU = 333  # the fake injector's value: nothing else in the tiny volumes reaches 333 HU


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny shapes gain nothing from threads, and on a shared machine extra threads only spin."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ball(shape: tuple[int, ...], centre: tuple[float, float, float], radius: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def fake_inject(
    hu: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator, diameter_mm: float
) -> tuple[np.ndarray, list[NoduleSpec]]:
    """Paste one soft-tissue ball (diameter in mm, voxel spacing respected on z) at a random central spot."""
    s = hu.shape[0]
    c = tuple(float(v) for v in rng.integers(s // 4, 3 * s // 4, size=3))
    out = hu.copy()
    out[_ball(hu.shape, c, diameter_mm / 2 / spacing[0])] = NODULE_HU  # type: ignore[arg-type]
    return out, [(c, diameter_mm)]  # type: ignore[list-item]


def fake_erase(hu: np.ndarray, spacing: tuple[float, float, float], nodules: list[NoduleSpec]) -> np.ndarray:
    """Replace each listed nodule's ball (radius + 1 voxel) with lung-like -850 HU."""
    out = hu.copy()
    for c, d in nodules:
        out[_ball(hu.shape, c, d / 2 / spacing[0] + 1)] = -850
    return out


def _write_synthetic(folder: Path, n: int, size: int = 16) -> Path:
    rng = np.random.default_rng(123)
    folder.mkdir(parents=True)
    for i in range(n):
        vol = np.full((size,) * 3, -850, np.int16) + rng.integers(-20, 20, (size,) * 3).astype(np.int16)
        np.save(folder / f"synth-{i:03d}.npy", vol)
    return folder


def test_classifier_input_window_and_area_resampling() -> None:
    hu = np.full((4, 4, 4), -1024, np.int16)
    hu[:2, :2, :2] = 600  # one octant at the top of the window
    hu[2:, 2:, 2:] = -212  # the window's middle -> 0.5
    x = hu_to_classifier_input(hu, 2)
    assert x.shape == (1, 2, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 1, 1, 1], 0.5, atol=1e-6)
    np.testing.assert_allclose(x[0, 0, 1, 1], 0.0, atol=1e-6)
    up = hu_to_classifier_input(hu, 16)
    assert up.shape == (1, 16, 16, 16) and 0.0 <= up.min() and up.max() <= 1.0
    with pytest.raises(ValueError, match="z, y, x"):
        hu_to_classifier_input(hu[0], 2)


@pytest.mark.parametrize(("n", "nodule_every"), [(24, 2), (18, 3), (14, 2)])
def test_real_set_is_balanced_and_follows_figure_3a(
    make_tiny_dataset: Callable[..., Path], n: int, nodule_every: int
) -> None:
    root = make_tiny_dataset(n=n, size=16, nodule_every=nodule_every)
    rows = {r.id: r for r in read_manifest(root / "manifest.csv")}
    vols = build_real_set(root, 4.0, seed=0, inject_fn=fake_inject, erase_fn=fake_erase)
    assert sorted(v.id for v in vols) == sorted(rows)
    for split in ("train", "validation", "test"):
        labels = [v.label for v in vols if v.split == split]
        assert sum(labels) == len(labels) // 2, (split, labels)
    for v in vols:
        row = rows[v.id]
        assert v.split == row.split and v.patient_id == row.patient_id
        assert v.origin in ((Origin.KEPT, Origin.ERASED) if row.has_nodule else (Origin.INJECTED, Origin.CLEAN))
        assert v.label == int(v.origin in (Origin.KEPT, Origin.INJECTED))
        has_fake_nodule = bool((v.volume == NODULE_HU).any())
        assert has_fake_nodule == (v.origin is Origin.INJECTED)
        if v.origin is Origin.ERASED:  # the original 30 HU nodule of the fixture is gone
            c = tuple(int(round(p)) for p in (row.size // 2, row.size // 2, row.size // 2 - row.size // 4))
            assert v.volume[c] == -850
    # both halves of each group are used when there are enough scans
    origins = {v.origin for v in vols}
    assert origins == set(Origin)


def test_no_patient_crosses_splits(make_tiny_dataset: Callable[..., Path]) -> None:
    root = make_tiny_dataset(n=12, size=16)
    rows = read_manifest(root / "manifest.csv")
    for r in rows:  # two scans per patient, both in the same split -> allowed
        r.patient_id = f"{r.split}-{rows.index(r) // 2}"
    write_manifest(root / "manifest.csv", rows)
    vols = build_real_set(root, 4.0, seed=1, inject_fn=fake_inject, erase_fn=fake_erase)
    assert patients_crossing_splits((v.patient_id, v.split) for v in vols) == {}
    rows[0].patient_id = rows[-1].patient_id = "PX"  # now one patient is in train and test
    assert rows[0].split != rows[-1].split
    write_manifest(root / "manifest.csv", rows)
    with pytest.raises(ValueError, match="PX"):
        build_real_set(root, 4.0, seed=1, inject_fn=fake_inject, erase_fn=fake_erase)


def test_seed_controls_placement_and_choice(make_tiny_dataset: Callable[..., Path]) -> None:
    root = make_tiny_dataset(n=24, size=16)
    a = build_real_set(root, 4.0, seed=0, inject_fn=fake_inject, erase_fn=fake_erase)
    b = build_real_set(root, 4.0, seed=0, inject_fn=fake_inject, erase_fn=fake_erase)
    c = build_real_set(root, 4.0, seed=5, inject_fn=fake_inject, erase_fn=fake_erase)
    assert all(np.array_equal(x.volume, y.volume) and x.label == y.label for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.volume, y.volume) for x, y in zip(a, c, strict=True))


def test_synthetic_set_half_injected_with_validation(tmp_path: Path) -> None:
    folder = _write_synthetic(tmp_path / "synth", 20)
    vols = build_synthetic_set(folder, 5.0, seed=0, inject_fn=fake_inject, val_fraction=0.2)
    assert len(vols) == 20
    splits = {s: [v for v in vols if v.split == s] for s in ("train", "validation")}
    assert len(splits["validation"]) == 4 and len(splits["train"]) == 16
    for part in splits.values():
        assert sum(v.label for v in part) == len(part) // 2
    for v in vols:
        assert bool((v.volume == NODULE_HU).any()) == bool(v.label)
        assert len(v.nodules) == v.label
    assert len(build_synthetic_set(folder, 5.0, seed=0, inject_fn=fake_inject, limit=8)) == 8
    with pytest.raises(ValueError, match="at least 4"):
        build_synthetic_set(folder, 5.0, seed=0, inject_fn=fake_inject, limit=3)


def test_summary_table_mean_and_sample_std() -> None:
    def cell(regime: str, d: float, seed: int, acc: float) -> CellResult:
        return CellResult(regime, d, seed, acc, 0.5, 0.7, acc, 1, 1, 8, 4, 4, 0.1)

    res = [cell("real", 14, 0, 0.5), cell("real", 14, 1, 0.7), cell("synthetic", 14, 0, 0.75)]
    table = summary_table(res)
    assert "| real | 0.600 ± 0.141 (n=2) |" in table  # std of (0.5, 0.7), ddof=1: 0.1414
    assert "| synthetic | 0.750 (n=1) |" in table
    assert "pretrain-finetune" not in table
    with pytest.raises(ValueError, match=r"regime must be one of \[.real., .synthetic., .pretrain-finetune., .real-all.\], got .both."):
        parse_regime("both")


def test_grid_runs_writes_outputs_and_resumes_skipping_finished_cells(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    real = make_tiny_dataset(n=24, size=16)
    synth = _write_synthetic(tmp_path / "synth", 12)
    out = tmp_path / "exp"
    cfg = DetectionConfig(input_size=16, width=0.125, steps=3, pretrain_steps=2, batch_size=4, eval_every=2)
    kw = dict(inject_fn=fake_inject, erase_fn=fake_erase, cfg=cfg, progress=False)
    first = run_experiment(real, synth, out, [4.0], [0], **kw)  # type: ignore[arg-type]
    names = sorted(k.name for k in first.ran)
    assert names == ["pretrain-finetune_d4_s0", "real_d4_s0", "synthetic_d4_s0"]
    assert first.skipped == []
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("regime,diameter_mm,seed,accuracy,auc")
    by = {r.regime: r for r in first.results}
    assert by["real"].n_test == 4 and by["real"].n_train == 16 and by["synthetic"].n_train == 10
    assert by["synthetic"].steps == 2 and by["pretrain-finetune"].steps == 3
    assert all(0.0 <= r.accuracy <= 1.0 for r in first.results)
    assert (out / "accuracy_vs_size.png").stat().st_size > 1000
    assert "| real |" in (out / "summary.md").read_text()
    assert (out / "checkpoints" / "synthetic_d4_s0.pt").exists()
    from ctsgan.training.run_log import read_metrics

    real_log = read_metrics(out / "logs" / "real_d4_s0")  # the GAN runs' logger: one row per validation
    assert [r["step"] for r in real_log][-1] == by["real"].steps
    assert {"train/loss", "val/accuracy", "val/auc", "val/loss"} <= set(real_log[-1])
    assert read_metrics(out / "logs" / "synthetic_d4_s0-pretrain")

    cells = out / "cells"
    kept = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json") if "pretrain" not in p.name}
    removed = json.loads((cells / "pretrain-finetune_d4_s0.json").read_text())
    (cells / "pretrain-finetune_d4_s0.json").unlink()
    second = run_experiment(real, synth, out, [4.0], [0], **kw)  # type: ignore[arg-type]
    assert [k.name for k in second.ran] == ["pretrain-finetune_d4_s0"]
    assert sorted(k.name for k in second.skipped) == ["real_d4_s0", "synthetic_d4_s0"]
    assert {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json") if "pretrain" not in p.name} == kept
    again = json.loads((cells / "pretrain-finetune_d4_s0.json").read_text())
    removed.pop("seconds"), again.pop("seconds")
    assert again == removed  # the re-run cell reproduces its first result exactly
    assert len(read_cell_results(out)) == 3

    # a second seed extends the grid; only its cells run
    third = run_experiment(real, synth, out, [4.0], [0, 1], regimes=[Regime.REAL], **kw)  # type: ignore[arg-type]
    assert [k.name for k in third.ran] == ["real_d4_s1"]
    with pytest.raises(ValueError, match="steps"):
        run_experiment(real, synth, out, [4.0], [0], **{**kw, "cfg": cfg.model_copy(update={"steps": 4})})  # type: ignore[arg-type]


def test_classical_injector_puts_soft_tissue_inside_the_lung_and_eraser_removes_it(
    make_tiny_dataset: Callable[..., Path],
) -> None:
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.nodules.classical import classical_erase, classical_inject
    from ctsgan.nodules.lung_mask import lung_mask

    data = PreparedDataset(make_tiny_dataset(n=2, size=32))
    hu = np.array(data.load(1))  # a clean volume
    lung = lung_mask(hu, (1.0, 1.0, 1.0))
    assert lung.sum() > 0.05 * hu.size
    out, nods = classical_inject(hu, (1.0, 1.0, 1.0), np.random.default_rng(0), 4.0)
    (c, d), = nods
    assert d == 4.0 and lung[tuple(int(v) for v in c)]
    ball = _ball(hu.shape, c, 1.0)
    assert abs(float(out[ball].mean()) - 30.0) < 40.0  # soft tissue at the centre
    far = ~_ball(hu.shape, c, 5.0)
    assert np.array_equal(out[far], hu[far])  # nothing changes away from the nodule
    erased = classical_erase(out, (1.0, 1.0, 1.0), nods)
    assert float(erased[ball].mean()) < -700.0  # lung-like again
    assert np.abs(erased[ball].astype(float) - hu[ball]).mean() < 0.2 * np.abs(out[ball].astype(float) - hu[ball]).mean()
    no_lung = np.full_like(hu, 40)  # all soft tissue: nowhere to put a nodule
    same, none = classical_inject(no_lung, (1.0, 1.0, 1.0), np.random.default_rng(0), 4.0)
    assert none == [] and np.array_equal(same, no_lung)


def test_cli_runs_real_regime_and_rejects_bad_sizes(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ctsgan.cli import app

    real = make_tiny_dataset(n=24, size=16)
    out = tmp_path / "cli"
    args = ["experiment", "nodule-detection", "--real", str(real), "--out", str(out), "--regimes", "real",
            "--sizes", "3", "--seeds", "0", "--steps", "2", "--eval-every", "1", "--input-size", "16",
            "--width", "0.125", "--batch-size", "4", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "classical" in res.output and "| real |" in res.output
    assert (out / "cells" / "real_d3_s0.json").exists()
    bad = CliRunner().invoke(app, [*args[:-1], "--sizes", "14,x"])
    assert bad.exit_code != 0 and "--sizes" in bad.output
    bad = CliRunner().invoke(app, [*args, "--regimes", "realish"])
    assert bad.exit_code != 0 and "valid" in bad.output


def test_voi_classifier_input_crops_around_the_centre_with_air_outside() -> None:
    hu = np.full((8, 8, 8), -1024, np.int16)
    hu[2, 3, 4] = 600
    x = voi_classifier_input(hu, (2, 3, 4), 4, np.random.default_rng(0), jitter=0)
    assert x.shape == (1, 4, 4, 4)
    assert x[0, 2, 2, 2] == 1.0 and x.sum() == 1.0  # the centre voxel sits at index size // 2
    x = voi_classifier_input(hu, (2, 3, 4), 16, np.random.default_rng(0), jitter=3)
    assert x.sum() == 1.0  # the voxel is still inside the jittered 16^3 VOI; everything else is air (0)


def test_voi_view_shows_the_nodule_for_positives_only(make_tiny_dataset: Callable[..., Path]) -> None:
    root = make_tiny_dataset(n=12, size=32)
    cfg = DetectionConfig(view=InputView.VOI, input_size=16, voi_jitter=2)
    vols = build_real_set(root, 4.0, seed=0, inject_fn=fake_inject, erase_fn=fake_erase, view=make_view(cfg, 4.0))
    nodule_unit = (NODULE_HU + 1024) / 1624
    for v in vols:
        assert v.volume.shape == (1, 16, 16, 16)
        has = bool(np.isclose(v.volume, nodule_unit, atol=1e-4).any())
        assert has == (v.origin is Origin.INJECTED), v.origin
        if v.origin is Origin.KEPT:  # the fixture's 30 HU nodule lies near the VOI centre
            assert v.volume[0, 6:10, 6:10, 6:10].max() > (0 + 1024) / 1624


def test_cached_lung_mask_equals_lung_mask_and_is_reused(make_tiny_dataset: Callable[..., Path]) -> None:
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.experiments.nodule_detection import cached_lung_mask
    from ctsgan.nodules.lung_mask import lung_mask

    hu = np.array(PreparedDataset(make_tiny_dataset(n=1, size=32)).load(0))
    first = cached_lung_mask(hu, (1.0, 1.0, 1.0))
    assert np.array_equal(first, lung_mask(hu, (1.0, 1.0, 1.0)))
    assert cached_lung_mask(hu.copy(), (1.0, 1.0, 1.0)) is first  # same content -> cached
    other = hu.copy()
    other[0, 0, 0] += 1
    assert cached_lung_mask(other, (1.0, 1.0, 1.0)) is not first
    assert cached_lung_mask(hu, (2.0, 1.0, 1.0)) is not first  # spacing is part of the key
