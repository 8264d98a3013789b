"""Part 4 hook of issue #11: CT-SGAN trained on all scans but one, structure + memorization numbers
(tiny preset, a few seconds of training; the real run is the lead's)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ctsgan.data.dataset import PreparedDataset
from ctsgan.experiments.real_chest import (
    checkpoint_trajectory,
    copying_test,
    holdout_ctsgan,
    holdout_dataset,
    leave_one_out_nearest,
    nearest_mix_structure,
    nearest_training,
)
from ctsgan.metrics.memorization import copying_rank_test
from ctsgan.metrics.structure import z_profile_sampling_floor, z_profiles
from training_helpers import one_thread  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]


def test_holdout_dataset_moves_one_volume_to_test(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    src = make_tiny_dataset(n=4, size=16)
    ds = PreparedDataset(holdout_dataset(src, tmp_path / "h", "tiny002"))
    assert {r.id: r.split for r in ds.rows} == {"tiny000": "train", "tiny001": "train", "tiny002": "test",
                                                "tiny003": "train"}
    assert np.array_equal(ds.load(2), PreparedDataset(src).load(2))
    with pytest.raises(ValueError, match=r"manifest\.csv: no volume 'nope'"):
        holdout_dataset(src, tmp_path / "h2", "nope")


def test_nearest_training_finds_the_copy() -> None:
    rng = np.random.default_rng(0)
    train = [rng.normal(-500, 300, (16, 16, 16)).astype(np.float32) for _ in range(3)]
    nn = nearest_training(train[1] + 5, train, ["a", "b", "c"])
    assert nn["nearest_mae"] == "b" and nn["nearest_ssim"] == "b" and nn["mae_hu"] <= 5.01 and nn["ssim"] > 0.9


def test_leave_one_out_distances_by_hand() -> None:
    """Constant scans at -1000, -900 and -500 HU: each one's nearest other scan is 100, 100 and
    400 HU away (small cubes keep constants), and it never finds itself."""
    vols = [np.full((16, 16, 16), hu, np.float32) for hu in (-1000.0, -900.0, -500.0)]
    loo = leave_one_out_nearest(vols, ["a", "b", "c"])
    assert [r["mae_hu"] for r in loo] == [100.0, 100.0, 400.0]
    assert [r["nearest_mae"] for r in loo] == ["b", "a", "b"]
    with pytest.raises(ValueError, match="two scans"):
        leave_one_out_nearest(vols[:1], ["a"])


def test_copying_test_orders_generated_against_new_patients() -> None:
    """P(generated closer than a new patient), ties half, worked out by hand; the one-sided
    p-value is small only when the generated set is the closer one."""
    assert copying_rank_test([1.0, 2.0], [3.0, 4.0])["auc_closer"] == 1.0
    assert copying_rank_test([5.0, 6.0], [3.0, 4.0])["auc_closer"] == 0.0
    assert copying_rank_test([3.0, 5.0], [3.0, 4.0])["auc_closer"] == 0.125 + 0.25  # (0.5 + 1 + 0 + 0) / 4
    new = [171.3, 171.3, 199.5, 199.5, 238.0, 303.0]  # the six real chests' leave-one-out distances
    copies = copying_rank_test([60, 80, 90, 100, 110, 120, 130, 140], new)
    like_new = copying_rank_test([170, 180, 195, 205, 230, 250, 290, 310], new)
    assert copies["auc_closer"] == 1.0 and copies["p_closer"] < 0.01
    assert 0.35 < like_new["auc_closer"] < 0.65 and like_new["p_closer"] > 0.2
    with pytest.raises(ValueError, match="both sets"):
        copying_rank_test([], new)
    loo = [{"volume": v, "mae_hu": d} for v, d in zip("abcdef", new, strict=True)]
    res = copying_test([60, 80], loo)
    assert res["auc_closer"] == 1.0 and res["new_patient_mae_hu"]["f"] == 303.0 and res["n_new"] == 6


def _body_with_lungs(z0: int, z1: int, size: int = 16) -> np.ndarray:
    """A box of soft tissue in air with lungs in slices z0..z1-1: chests that differ in layout along z."""
    v = np.full((size, size, size), -1000, np.int16)
    v[:, 2:-2, 2:-2] = 40
    v[z0:z1, 4:-4, 3:7] = v[z0:z1, 4:-4, 9:13] = -850
    return v


def test_nearest_mix_scores_the_training_scans_in_the_sets_mix() -> None:
    """The mix's z-profile error is that of the nearest training scans, each counted once per volume."""
    from ctsgan.metrics.structure import volume_structure, z_profile_error

    vols = [_body_with_lungs(0, 8), _body_with_lungs(4, 12), _body_with_lungs(8, 16)]
    ids, real_s = ["top", "mid", "low"], [volume_structure(v) for v in vols]
    # every patient once: the mean of the copies is the training mean, by hand 0
    assert nearest_mix_structure(real_s, ids, ids)["z_profile_error"] == pytest.approx(0.0, abs=1e-12)
    one = nearest_mix_structure(real_s, ids, ["top"] * 3)
    assert one["counts"] == {"top": 3, "mid": 0, "low": 0}
    assert one["z_profile_error"] == pytest.approx(z_profile_error(vols, [vols[0]]))
    # by hand: lung (and body) fractions per quarter of z, real mean (1/3, 2/3, 2/3, 1/3) of spread 2/3;
    # "top" alone (1, 1, 0, 0) is 2 / (2/3) = 3 off, two "top" and a "mid" (2/3, 1, 1/3, 0) 2, one of each 1.5
    assert one["z_profile_error"] == pytest.approx(3.0)
    # counts weigh: two volumes near "top" and one near "mid" is not one of each
    skew = nearest_mix_structure(real_s, ids, ["top", "mid", "top"])
    assert skew["z_profile_error"] == pytest.approx(z_profile_error(vols, [vols[0], vols[0], vols[1]]))
    assert skew["z_profile_error"] == pytest.approx(2.0)
    assert nearest_mix_structure(real_s, ids, ["top", "mid"])["z_profile_error"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="'nobody'.*not training scans"):
        nearest_mix_structure(real_s, ids, ["top", "nobody"])
    with pytest.raises(ValueError, match="no generated volumes"):
        nearest_mix_structure(real_s, ids, [])


@pytest.mark.slow
def test_holdout_ctsgan_tiny_run_reports_structure_and_memorization(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path, one_thread: None  # noqa: F811
) -> None:
    from ctsgan.training.recipes import get_recipe

    src = make_tiny_dataset(n=6, size=16)
    cfg = get_recipe("ctsgan").load_config("tiny")
    cfg.hu_calibration, cfg.hu_calibration_volumes = True, 2
    cfg.checkpoint_every, cfg.keep_last = 10, 100  # milestones for the trajectory
    (tmp_path / "tiny_cal.yaml").write_text(cfg.to_yaml())
    res = holdout_ctsgan(src, tmp_path / "ho", str(tmp_path / "tiny_cal.yaml"), train_seconds=3, holdout="tiny005",
                         n_generate=2, steps=50)
    assert res["holdout"] == "tiny005" and "tiny005" not in res["train_ids"] and len(res["train_ids"]) == 5
    assert 1 <= res["steps"] <= 50 and res["n_generated"] == 2
    assert res["structure"]["n_real"] == 5 and res["structure"]["n_fake"] == 2
    assert res["structure"]["z_profile_error"] is not None and res["structure_heldout"]["n_fake"] == 1
    mem = res["memorization"]
    assert len(mem["generated"]) == 2 and mem["heldout"]["nearest_mae"] in res["train_ids"]
    assert mem["heldout"]["mae_hu"] > 0 and 0 <= mem["closer_than_heldout"] <= 2
    assert json.loads((tmp_path / "ho" / "holdout.json").read_text())["steps"] == res["steps"]
    # calibrated run: the raw generator's numbers beside, from the same seeds
    assert res["raw"]["structure"]["n_fake"] == 2 and 0 <= res["raw"]["closer_than_heldout"] <= 2
    raw = sorted((tmp_path / "ho" / "generated_raw").glob("*.npy"))
    cooked = sorted((tmp_path / "ho" / "generated").glob("*.npy"))
    assert [p.name for p in raw] == [p.name for p in cooked] and not np.array_equal(np.load(raw[0]), np.load(cooked[0]))
    assert res["copies"]["train_nearest_other_hu"] > 0 and res["copies_heldout"]["copy_ratio"] > 0
    ct = res["copying_test"]  # the held-out scan's own distance is one of the six new-patient distances
    assert ct["n_generated"] == 2 and ct["n_new"] == 6 and ct["new_patient_mae_hu"]["tiny005"] == mem["heldout"]["mae_hu"]
    # every kept checkpoint measured the same way; the last one gives the final report's numbers
    from ctsgan.data.hu_calibration import calibration_path
    from ctsgan.training.checkpoint import list_checkpoints

    kept = list_checkpoints(tmp_path / "ho" / "run")
    rows = checkpoint_trajectory(tmp_path / "ho" / "run", tmp_path / "ho" / "data", tmp_path / "traj", "tiny005",
                                 n_generate=2)
    assert [r["step"] for r in rows] == [s for s, _ in kept] and len(rows) >= 2
    assert rows[0]["z_profile_error"] != rows[-1]["z_profile_error"]  # each row its own checkpoint
    assert all(calibration_path(p).is_file() for _, p in kept)
    last = rows[-1]
    assert last["z_profile_error"] == res["structure"]["z_profile_error"]
    assert last["min_mae_hu"] == mem["generated_min_mae_hu"] and last["copy_ratio"] == res["copies"]["copy_ratio"]
    assert last["heldout_mae_hu"] == mem["heldout"]["mae_hu"] and last["copy_auc"] == ct["auc_closer"]
    with pytest.raises(ValueError, match="config cpu64 has size 64"):
        holdout_ctsgan(src, tmp_path / "ho2", "cpu64", train_seconds=3, holdout="tiny005")


@pytest.mark.slow
def test_benchmark_hook_runs_on_the_real_chests(tmp_path: Path, one_thread: None) -> None:  # noqa: F811
    """``benchmarks/real_chest.py --config tiny --train-seconds 3``: 16^3 cubes, LIDC-IDRI-0006 held out."""
    data = REPO.parent / "shared" / "data" / "chest"
    if not (data / "annotations.csv").exists():
        pytest.skip(f"real chest scans not found at {data}")
    spec = importlib.util.spec_from_file_location("real_chest_bench", REPO / "benchmarks" / "real_chest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["--out", str(tmp_path / "w"), "--data", str(data), "--skip", "prepare,erase,radial",
                   "--config", "tiny", "--train-seconds", "3", "--train-steps", "20", "--n-generate", "2",
                   "--results", str(tmp_path / "res")])
    assert rc == 0
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    ho = summary["holdout"]
    assert ho["size"] == 16 and ho["holdout"] == "LIDC-IDRI-0006" and len(ho["train_ids"]) == 5
    assert "LIDC-IDRI-0006" not in ho["train_ids"]
    assert "held-out real scan" in (tmp_path / "res" / "summary.md").read_text()
    # trained on the nodule-free set
    assert (tmp_path / "w" / "clean_16" / "erased.csv").exists()
    # --skip train: the same run measured again, and every checkpoint it kept
    rc = mod.main(["--out", str(tmp_path / "w"), "--data", str(data), "--skip", "prepare,erase,radial,train",
                   "--config", "tiny", "--n-generate", "2", "--trajectory", "--aligned", "--results", str(tmp_path / "res2"),
                   "--holdout-figure", str(tmp_path / "ho.png"), "--guard"])
    again = json.loads((tmp_path / "res2" / "summary.json").read_text())["holdout"]
    assert rc == 0 and again["steps"] == ho["steps"]
    # --guard: a second set through the privacy guard, its threshold the closest two training patients
    gd = again["guarded"]
    train = PreparedDataset(tmp_path / "w" / "holdout_16" / "data", split="train")
    loo = leave_one_out_nearest([np.asarray(train.load(i)) for i in range(len(train))], train.ids)
    assert gd["threshold_hu"] == pytest.approx(min(r["mae_hu"] for r in loo), abs=0.1)
    assert gd["kept"] == 2 <= gd["candidates"] and len(gd["memorization"]["generated"]) == 2
    assert min(g["mae_hu"] for g in gd["memorization"]["generated"]) >= gd["threshold_hu"] - 0.1
    assert Path(gd["figure"]).is_file() and again["trajectory"][-1]["guarded"]["kept"] == 2
    assert "guarded (`generate --guard`" in (tmp_path / "res2" / "summary.md").read_text()
    # each set's nearest-patient mix: one count per volume, from its own nearest scans
    for rep in (again, gd):
        mix = rep["nearest_mix"]
        assert sum(mix["counts"].values()) == 2 and set(mix["counts"]) == set(again["train_ids"])
        assert all(mix["counts"][g["nearest_mae"]] >= 1 for g in rep["memorization"]["generated"])
    assert "guarded nearest-patient mix" in (tmp_path / "res2" / "summary.md").read_text()
    # each set's z-profile sampling floor: a perfect generator's set of as many volumes, drawn from these five scans
    floor = z_profile_sampling_floor([z_profiles(np.asarray(train.load(i))) for i in range(len(train))], 2)
    assert again["z_profile_floor"] == floor == gd["z_profile_floor"] and floor["mean"] > 0
    assert "guarded z-profile sampling floor (a perfect generator's set of 2" in (tmp_path / "res2" / "summary.md").read_text()
    # and each set's bootstrap interval: around its own error, which is the structure metrics' one
    for rep in (again, gd):
        boot = rep["z_profile_bootstrap"]
        assert boot["error"] == pytest.approx(rep["structure"]["z_profile_error"])
        assert boot["low"] <= boot["error"] <= boot["high"] and boot["sd"] >= 0
    assert "guarded z-profile error" in (tmp_path / "res2" / "summary.md").read_text()
    assert "90 % bootstrap interval" in (tmp_path / "res2" / "summary.md").read_text()
    assert again["memorization"]["generated_min_mae_hu"] == ho["memorization"]["generated_min_mae_hu"]
    assert again["trajectory"][-1]["step"] == ho["steps"]
    assert "every kept checkpoint" in (tmp_path / "res2" / "summary.md").read_text()
    # benchmarks/latent_scale.py: psi 1 is the plain set above; psi 3 renders other volumes
    spec = importlib.util.spec_from_file_location("latent_scale_bench", REPO / "benchmarks" / "latent_scale.py")
    assert spec and spec.loader
    ls = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ls)
    w = tmp_path / "w" / "holdout_16"
    ls.main(["--run", str(w / "run"), "--data", str(w / "data"), "--out", str(tmp_path / "ls"), "--psi", "1,3",
             "--n-generate", "2", "--json", str(tmp_path / "ls.json")])
    plain, wide = json.loads((tmp_path / "ls.json").read_text())["rows"]
    assert plain["min_mae"] == ho["memorization"]["generated_min_mae_hu"]
    first = [np.load(tmp_path / "ls" / f"psi{p}_patient" / "generated" / "synthetic-s0-00000.npy") for p in (1.0, 3.0)]
    assert np.abs(first[0].astype(np.float32) - first[1]).mean() > 1.0  # HU: the scale reached G
    # --aligned: the identity is one of the transforms tried, so stretching can only bring a scan closer
    al = again["aligned_copies"]
    assert len(al["generated_hu"]) == 2 and 0 <= al["closer_than_heldout"] <= 2
    assert 0 < al["heldout_hu"] <= again["copies_heldout"]["nearest_train_hu"] + 0.1
    assert min(al["generated_hu"]) <= again["copies"]["nearest_train_hu"] + 0.1
    assert all(b[0] in ho["train_ids"] for b in al["best"])
    assert again["trajectory"][-1]["aligned_closer_than_heldout"] == al["closer_than_heldout"]
    assert "aligned" in (tmp_path / "res2" / "summary.md").read_text()
    from PIL import Image

    with Image.open(tmp_path / "ho.png") as im:  # five rows (held-out, two generated, their nearest) of three planes
        assert im.size[1] > 1.3 * im.size[0]
    assert again["figure"] == str(tmp_path / "ho.png")
