"""The detection experiment can say whether it resolves anything (issue "The downstream proof must
be able to prove something"): intervals, paired differences, a positive control with a verdict,
and a refusal of nodules the classifier cannot see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ctsgan.experiments.nodule_detection import CellResult, DetectionConfig, Regime, run_experiment
from ctsgan.experiments.nodule_detection.report import (
    UNTOUCHED,
    comparison,
    difference_table,
    interval_table,
    origin_table,
    verdict,
    write_outputs,
)
from ctsgan.experiments.nodule_detection.stats import (
    accuracy_estimate,
    mcnemar_p,
    paired_difference,
    wilson_interval,
)
from ctsgan.experiments.nodule_detection.training import TensorSet, limit_training_set
from test_nodule_detection import fake_erase, fake_inject


def test_wilson_interval_by_hand() -> None:
    # 8 of 10: centre (0.8 + 1.92/10) / 1.384 = 0.7168, half 1.96 * sqrt(0.016 + 0.0096) / 1.384 = 0.2266
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 50)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(50, 50)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_accuracy_and_paired_differences() -> None:
    one = accuracy_estimate([[1] * 8 + [0] * 2])
    assert (one.mean, one.lo, one.hi) == pytest.approx((0.8, *wilson_interval(8, 10)))
    same = [[1, 0, 1, 1, 0, 1, 0, 1] * 25] * 3
    d0 = paired_difference(same, same)
    assert (d0.mean, d0.lo, d0.hi) == (0.0, 0.0, 0.0) and not d0.excludes_zero()
    d1 = paired_difference([[1] * 200] * 2, [[0] * 200] * 2)
    assert (d1.mean, d1.lo, d1.hi) == (1.0, 1.0, 1.0) and d1.excludes_zero()
    # 400 scans, A right on 60 % and B on 50 %, independent: a 10-point gap is resolved
    gen = torch.Generator().manual_seed(0)
    a = [(torch.rand(400, generator=gen) < 0.6).int().tolist() for _ in range(3)]
    b = [(torch.rand(400, generator=gen) < 0.5).int().tolist() for _ in range(3)]
    d = paired_difference(a, b)
    assert d.excludes_zero() and 0.05 < d.mean < 0.15 and d.hi - d.lo < 0.12
    est = accuracy_estimate(a)
    assert est.hi - est.lo <= 0.10  # the "no wider than +-0.05" at 400 test scans x 3 seeds
    # McNemar by hand: 8 scans only A gets right, 1 only B: 2 * (C(9,8) + C(9,9)) / 2^9 = 0.0390625
    assert mcnemar_p([1] * 8 + [0] + [1] * 5, [0] * 8 + [1] + [1] * 5) == pytest.approx(0.0390625)
    assert mcnemar_p([1, 0], [1, 0]) == 1.0


def test_training_subset_is_balanced_and_seeded() -> None:
    data = TensorSet(torch.zeros(40, 1, 2, 2, 2), torch.tensor([1, 0] * 20))
    sub = limit_training_set(data, 10, seed=3)
    assert len(sub) == 10 and int(sub.y.sum()) == 5
    assert torch.equal(sub.y, limit_training_set(data, 10, seed=3).y)
    assert limit_training_set(data, None, 0) is data and limit_training_set(data, 100, 0) is data


def _cell(regime: Regime, seed: int, correct: list[int]) -> CellResult:
    acc = sum(correct) / len(correct)
    return CellResult(regime.value, 8.0, seed, acc, 0.5, 0.7, acc, 1, 1, 10, 4, len(correct), 0.1, correct)


def test_the_verdict_follows_the_positive_control(tmp_path: Path) -> None:
    half = [1, 0] * 100
    real = [_cell(Regime.REAL, s, half) for s in (0, 1)]
    assert verdict(real).startswith("NO POSITIVE CONTROL")
    weak = real + [_cell(Regime.REAL_ALL, s, [0, 1] * 100) for s in (0, 1)]  # as good, other scans right
    assert verdict(weak).startswith("NOT RESOLVED") and "not a result" in verdict(weak)
    strong = real + [_cell(Regime.REAL_ALL, s, [1, 1] * 100) for s in (0, 1)]
    assert verdict(strong).startswith("Positive control resolved at 8 mm")
    assert "0.500 [0.4" in difference_table(strong) and "positive control" in difference_table(strong)
    assert "| real | 0.500 [" in interval_table(strong)
    # the report leads with the verdict
    import json
    from dataclasses import asdict

    (tmp_path / "cells").mkdir()
    for c in weak:
        (tmp_path / "cells" / f"{c.regime}_d8_s{c.seed}.json").write_text(json.dumps(asdict(c)))
    write_outputs(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("**NOT RESOLVED")
    assert "test_correct" not in (tmp_path / "results.csv").read_text()


def test_origin_table_splits_kept_nodules_at_the_visibility_limit() -> None:
    # 6 test scans: two kept (20 mm seen, 8 mm missed), injected right, erased wrong, two clean right
    cell = _cell(Regime.REAL, 0, [1, 0, 1, 0, 1, 1])
    cell.test_origins = ["kept", "kept", "injected", "erased", "clean", "clean"]
    cell.test_nodule_mm = [20.0, 8.0, 16.0, 0.0, 0.0, 0.0]
    cell.visible_mm = 15.0
    other = _cell(Regime.REAL, 1, [1, 1, 1, 1, 0, 0])  # a second seed pools into the same row
    other.test_origins, other.test_nodule_mm, other.visible_mm = cell.test_origins, cell.test_nodule_mm, 15.0
    table = origin_table([cell, other])
    head, _, row = table.splitlines()
    assert head == "| regime, diameter (mm) | kept >= 15 mm | kept < 15 mm | clean | erased | injected |"
    assert row == "| real, 8 | 1.00 (2) | 0.50 (2) | 0.50 (4) | 0.50 (2) | 1.00 (2) |"
    assert "no per-scan origins" in origin_table([_cell(Regime.REAL, 0, [1, 0])])


def test_differences_on_untouched_test_scans_leave_out_the_edited_ones() -> None:
    # 200 test scans: 100 untouched (kept / clean), 100 edited (injected / erased)
    origins = ["kept", "clean", "injected", "erased"] * 50
    untouched = [o in ("kept", "clean") for o in origins]
    a = _cell(Regime.PRETRAIN_FINETUNE, 0, [1] * 200)  # right everywhere
    b = _cell(Regime.REAL, 0, [0 if u else 1 for u in untouched])  # wrong on every untouched scan
    for c in (a, b):
        c.test_origins = origins
    assert comparison([a, b], Regime.PRETRAIN_FINETUNE, Regime.REAL, 8.0).mean == pytest.approx(0.5)
    on_untouched = comparison([a, b], Regime.PRETRAIN_FINETUNE, Regime.REAL, 8.0, UNTOUCHED)
    assert (on_untouched.mean, on_untouched.lo, on_untouched.hi) == pytest.approx((1.0, 1.0, 1.0))
    assert "| 1.000 [1.000, 1.000] |" in difference_table([a, b], UNTOUCHED)
    assert comparison([a, b], Regime.PRETRAIN_FINETUNE, Regime.REAL, 8.0, ("nothing",)) is None


def test_invisible_nodules_are_refused_with_a_fix(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    real = make_tiny_dataset(n=8, size=16)  # 1 mm voxels, 16^3
    small = DetectionConfig(input_size=16)
    with pytest.raises(ValueError, match=r"a 2 mm nodule spans 2.0 classifier-input voxels .* data prepared at --size 24"):
        run_experiment(real, None, tmp_path / "a", [2.0, 6.0], [0], fake_inject, fake_erase, cfg=small,
                       regimes=[Regime.REAL], progress=False)
    finer = make_tiny_dataset(n=8, size=32)  # 1 mm voxels, 32^3: a 3 mm nodule is 1.5 voxels at input 16
    with pytest.raises(ValueError, match=r"a 3 mm nodule spans 1.5 .* use --input-size 32 \(the whole 32\^3 cube"):
        run_experiment(finer, None, tmp_path / "c", [3.0], [0], fake_inject, fake_erase, cfg=small,
                       regimes=[Regime.REAL], progress=False)
    assert not (tmp_path / "a" / "cells").exists()  # refused before anything ran
    with pytest.raises(ValueError, match=r"nodules of at least 3 mm, or data prepared at --size 24 or more .*voi view"):
        run_experiment(real, None, tmp_path / "b", [2.0], [0], fake_inject, fake_erase,
                       cfg=DetectionConfig(input_size=16, view="voi"), regimes=[Regime.REAL], progress=False)


def test_grid_with_a_small_real_set_runs_the_positive_control(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    real = make_tiny_dataset(n=24, size=16)
    cfg = DetectionConfig(input_size=16, width=0.125, steps=2, batch_size=4, eval_every=2, real_train_limit=4)
    rep = run_experiment(real, None, tmp_path / "exp", [4.0], [0], fake_inject, fake_erase, cfg=cfg,
                         regimes=[Regime.REAL, Regime.REAL_ALL], progress=False)
    by = {r.regime: r for r in rep.results}
    assert by["real"].n_train == 4 and by["real-all"].n_train == 16
    assert len(by["real"].test_correct) == by["real"].n_test == len(by["real-all"].test_correct)
    assert sum(by["real"].test_correct) / by["real"].n_test == pytest.approx(by["real"].accuracy)
    # each test scan's origin is stored beside its outcome: half the balanced test set is positive
    origins = by["real"].test_origins
    assert len(origins) == by["real"].n_test and sum(o in ("kept", "injected") for o in origins) == len(origins) // 2
    assert all((mm > 0) == (o in ("kept", "injected")) for o, mm in zip(origins, by["real"].test_nodule_mm, strict=True))
    assert by["real"].visible_mm == pytest.approx(3.0)  # 3 input voxels of 1 mm (16^3 cube at input 16)
    summary = (tmp_path / "exp" / "summary.md").read_text()
    assert "positive control" in summary and ("NOT RESOLVED" in summary or "resolved at" in summary)
    assert "## Test accuracy by kind of test scan" in summary and "| real, 4 |" in summary
    with pytest.raises(ValueError, match="set real_train_limit"):
        run_experiment(real, None, tmp_path / "x", [4.0], [0], fake_inject, fake_erase,
                       cfg=DetectionConfig(input_size=16), regimes=[Regime.REAL_ALL], progress=False)
