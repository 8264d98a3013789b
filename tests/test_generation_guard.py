"""The privacy guard of ``ctsgan generate --guard``: distances worked by hand, what a guarded run
writes, its decision log, resume after a kill, and giving up on a copying generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_tiny_dataset
from ctsgan.cli import app
from ctsgan.generation import generate_volumes, volume_name
from ctsgan.generation.generate import LoadedGenerator, guarded_candidates
from ctsgan.generation.guard import GuardLog, GuardVerdict, TrainingSetGuard
from training_helpers import one_thread, train_tiny_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _flat(hu: float, shape: tuple[int, int, int] = (16, 16, 16)) -> np.ndarray:
    return np.full(shape, hu, dtype=np.int16)


def test_automatic_threshold_is_the_closest_pair_of_different_patients() -> None:
    # scans a1, a2 of one patient 100 HU apart; patient B 800 HU from a2 and 900 from a1
    guard = TrainingSetGuard([_flat(-1000), _flat(-900), _flat(-100)], ["a1", "a2", "b"], ["A", "A", "B"])
    assert guard.threshold_hu == pytest.approx(800.0)  # not 100: two scans of one patient do not set it
    v = guard.check(_flat(-960, (8, 20, 20)))  # any shape: compared as 32^3 cubes
    assert (v.nearest_id, v.distance_hu, v.kept) == ("a1", pytest.approx(40.0), False)
    far = TrainingSetGuard([_flat(-1000), _flat(-900)], ["a1", "a2"], min_distance_hu=450.0).check(_flat(-450))
    assert (far.nearest_id, far.distance_hu, far.kept) == ("a2", pytest.approx(450.0), True)  # at the threshold: kept
    with pytest.raises(ValueError, match="at least two patients"):
        TrainingSetGuard([_flat(-1000), _flat(-900)], ["a1", "a2"], ["A", "A"])
    with pytest.raises(ValueError, match="finite number of HU"):
        TrainingSetGuard([_flat(0)], ["a"], min_distance_hu=float("nan"))


def test_guard_from_dataset_reads_the_training_split(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d", n=6)
    guard = TrainingSetGuard.from_dataset(data)
    assert guard.ids == ["tiny000", "tiny001", "tiny002", "tiny003"]  # validation and test scans are not guarded
    with pytest.raises(ValueError, match="no volumes in split 'train'"):
        TrainingSetGuard.from_dataset(write_tiny_dataset(tmp_path / "e", n=2, splits=("test",)))


def test_candidates_are_the_share_then_disjoint_extras() -> None:
    assert guarded_candidates(4, 0, 1, 3) == [0, 1, 2, 3, *range(4, 12)]
    r0, r1 = guarded_candidates(5, 0, 2, 2), guarded_candidates(5, 1, 2, 2)
    assert r0 == [0, 1, 2, 5, 7, 9] and r1 == [3, 4, 6, 8]
    assert not set(r0) & set(r1)


def test_log_ignores_a_torn_line_and_appends_cleanly(tmp_path: Path) -> None:
    log = GuardLog(tmp_path / "guard.csv")
    log.append("v0", GuardVerdict("a", 10.0, 5.0))
    log.append("v1", GuardVerdict("b", 1.0, 5.0))
    log.close()
    with (tmp_path / "guard.csv").open("a") as f:
        f.write("v2,1,12")  # killed mid-row
    assert log.read() == {"v0": True, "v1": False}
    log.append("v3", GuardVerdict("a", 7.0, 5.0))
    log.close()
    assert log.read() == {"v0": True, "v1": False, "v2": True, "v3": True}  # v2's decision was whole
    assert (tmp_path / "guard.csv").read_text().splitlines()[-1] == "v3,1,7.0,a,5.0"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run("ctsgan", tmp_path_factory.mktemp("guard"), steps=2)


@pytest.fixture(scope="module")
def unguarded(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], list[float], float]:
    """Volumes 0..15 of seed 3 without a guard, their distances to the training scans, and a
    threshold halfway between two of them that rejects about half."""
    paths = generate_volumes(run_dir, 16, tmp_path_factory.mktemp("plain"), seed=3, fmt="npy", writers=0, batch=4)
    vols = [np.load(p) for p in paths]
    guard = TrainingSetGuard.from_dataset(run_dir.parent / "data", min_distance_hu=0.0)
    dist = [guard.check(v).distance_hu for v in vols]
    s = sorted(dist)
    assert s[7] < s[8], "the tiny generator's volumes should differ"
    return vols, dist, (s[7] + s[8]) / 2


def _guard(run_dir: Path, threshold: float) -> TrainingSetGuard:
    return TrainingSetGuard.from_dataset(run_dir.parent / "data", min_distance_hu=threshold)


def test_guarded_run_writes_the_first_volumes_that_pass(run_dir: Path, unguarded: tuple, tmp_path: Path) -> None:
    vols, dist, t = unguarded
    want = [i for i, d in enumerate(dist) if d >= t][:4]
    assert want != [0, 1, 2, 3]  # the guard has something to do
    for batch in (1, 3):
        out = tmp_path / f"b{batch}"
        paths = generate_volumes(run_dir, 4, out, seed=3, fmt="npy", writers=0, batch=batch, guard=_guard(run_dir, t))
        assert [p.name for p in paths] == [f"{volume_name(3, i)}.npy" for i in want]
        for i, p in zip(want, paths, strict=True):
            assert int(np.abs(np.load(p).astype(np.int32) - vols[i]).max()) <= 1
        decided = GuardLog(out / "guard-s3.csv").read()
        assert decided == {volume_name(3, i): dist[i] >= t for i in range(want[-1] + 1)}  # every candidate, once
        assert sorted(p.name for p in (out / "previews").glob("*.png")) == [f"{volume_name(3, i)}.png" for i in want]


@pytest.mark.parametrize("writers", [0, 2])
def test_guarded_resume_skips_rejected_volumes(
    run_dir: Path, unguarded: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: int
) -> None:
    _, dist, t = unguarded
    full = generate_volumes(run_dir, 5, tmp_path / "full", seed=3, fmt="npy", writers=0, batch=2, guard=_guard(run_dir, t))
    out = tmp_path / "out"
    asked: list[int] = []
    real_sample_many = LoadedGenerator.sample_many

    def counting(self: LoadedGenerator, seeds: list[int], **kw: object) -> list[np.ndarray]:
        asked.extend(seeds)
        if len(asked) > 6:
            raise KeyboardInterrupt  # killed in the fourth batch
        return real_sample_many(self, seeds, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(LoadedGenerator, "sample_many", counting)
    with pytest.raises(KeyboardInterrupt):
        generate_volumes(run_dir, 5, out, seed=3, fmt="npy", writers=writers, batch=2, guard=_guard(run_dir, t))
    first = GuardLog(out / "guard-s3.csv").read()
    assert len(first) == 6
    with pytest.raises(ValueError, match=r"already holds a guarded run of seed 3 \(guard-s3.csv\): pass --resume"):
        generate_volumes(run_dir, 5, out, seed=3, fmt="npy", guard=_guard(run_dir, t))
    asked.clear()
    made = generate_volumes(run_dir, 5, out, seed=3, fmt="npy", writers=0, batch=2, resume=True, guard=_guard(run_dir, t))
    monkeypatch.undo()
    assert len(asked) >= 1 and not {s for s in asked} & {_seed(3, i) for i in range(6)}  # decided ones not redrawn
    assert sorted(p.name for p in out.glob("*.npy")) == [p.name for p in full]
    assert [p.name for p in made] == [p.name for p in full][sum(first.values()):]
    assert GuardLog(out / "guard-s3.csv").read() == GuardLog(tmp_path / "full" / "guard-s3.csv").read()
    assert len((out / "guard-s3.csv").read_text().splitlines()) == len((tmp_path / "full" / "guard-s3.csv").read_text().splitlines())
    assert dist  # the fixture's distances were computed for this run's seed


def _seed(seed: int, i: int) -> int:
    from ctsgan.generation import volume_seed

    return volume_seed(seed, i)


def test_guard_gives_up_on_a_generator_that_never_passes(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"let 0 of 2 volumes through in 6 candidates \(threshold 100000.0 HU"):
        generate_volumes(run_dir, 2, tmp_path, seed=1, fmt="npy", writers=0, guard=_guard(run_dir, 1e5), guard_max_tries=3)
    assert not list(tmp_path.glob("*.npy"))
    assert list(GuardLog(tmp_path / "guard-s1.csv").read().values()) == [False] * 6
    with pytest.raises(RuntimeError, match="let 0 of 2 volumes through in 6 candidates"):  # resuming it says so again
        generate_volumes(run_dir, 2, tmp_path, seed=1, fmt="npy", writers=0, guard=_guard(run_dir, 1e5), guard_max_tries=3,
                         resume=True)


def test_cli_guard_options(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["generate", "--checkpoint", str(run_dir), "-n", "1", "--out", str(tmp_path / "a"),
                              "--guard-distance", "10"])
    assert bad.exit_code == 1 and "--guard-distance needs --guard" in bad.output
    ok = runner.invoke(app, ["generate", "--checkpoint", str(run_dir), "-n", "2", "--out", str(tmp_path / "b"), "--format", "npy",
                             "--guard", str(run_dir.parent / "data"), "--writers", "0"])
    assert ok.exit_code == 0, ok.output
    assert "guard: 4 training scans" in ok.output and len(list((tmp_path / "b").glob("*.npy"))) == 2
    decided = GuardLog(tmp_path / "b" / "guard-s0.csv").read()
    assert sum(decided.values()) == 2 and f"guard: 2 of {len(decided)} drawn volumes passed" in ok.output


def test_guarded_folder_is_checked_against_its_log(run_dir: Path, unguarded: tuple, tmp_path: Path) -> None:
    _, dist, t = unguarded
    want = [f"{volume_name(3, i)}.npy" for i in [i for i, d in enumerate(dist) if d >= t][:4]]
    out = tmp_path / "o"
    generate_volumes(run_dir, 4, out, seed=3, fmt="npy", writers=0, guard=_guard(run_dir, 0.0))  # lets 0..3 through
    with pytest.raises(ValueError, match=r"guard-s3.csv: decided with threshold 0.0 HU, this run's is"):
        generate_volumes(run_dir, 4, out, seed=3, fmt="npy", resume=True, guard=_guard(run_dir, t))
    for kw in ({}, {"resume": True}, {"overwrite": True}):  # never an unguarded run over a guarded one
        with pytest.raises(ValueError, match="holds a guarded run of seed 3 \\(guard-s3.csv\\): pass --guard"):
            generate_volumes(run_dir, 4, out, seed=3, fmt="npy", **kw)  # type: ignore[arg-type]
    # --overwrite with a stricter guard: the earlier volumes it does not pass are gone, previews too
    generate_volumes(run_dir, 4, out, seed=3, fmt="npy", writers=0, overwrite=True, guard=_guard(run_dir, t))
    assert sorted(p.name for p in out.glob("*.npy")) == want
    assert len(list((out / "previews").glob("*.png"))) == 4
    assert GuardLog(out / "guard-s3.csv").thresholds() == {f"{t:.1f}"}
    # another seed has its own log; volumes the log did not pass are refused on resume
    generate_volumes(run_dir, 2, out, seed=4, fmt="npy", writers=0)
    with pytest.raises(ValueError, match="2 volumes of seed 4 on disk were not passed by this guard"):
        generate_volumes(run_dir, 2, out, seed=4, fmt="npy", resume=True, guard=_guard(run_dir, t))
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "guard-s5.csv").write_text("name,score\nx,1\n")
    with pytest.raises(ValueError, match="guard-s5.csv: not a guard log"):
        generate_volumes(run_dir, 2, tmp_path / "f", seed=5, fmt="npy", resume=True, guard=_guard(run_dir, t))
    one = write_tiny_dataset(tmp_path / "one", n=2, splits=("train",))
    rows = (one / "manifest.csv").read_text().replace("P001", "P000")  # two scans of one patient
    (one / "manifest.csv").write_text(rows)
    with pytest.raises(ValueError, match=r"one/manifest.csv \(split 'train'\): the automatic guard distance needs"):
        TrainingSetGuard.from_dataset(one)


def test_the_guard_works_for_the_3d_gan_too(tmp_path: Path) -> None:
    run = train_tiny_run("gan3d", tmp_path / "g3", steps=2)
    guard = TrainingSetGuard.from_dataset(run.parent / "data", min_distance_hu=0.0)
    paths = generate_volumes(run, 2, tmp_path / "out", seed=0, fmt="npy", writers=0, size=24, guard=guard)
    assert [np.load(p).shape for p in paths] == [(24, 24, 24)] * 2  # resampled output: compared as 32^3 cubes all the same
    rows = GuardLog(tmp_path / "out" / "guard-s0.csv").rows()
    assert [r["kept"] for r in rows] == ["1", "1"] and all(float(r["distance_hu"]) > 0 for r in rows)


def test_two_ranks_write_their_shares_from_disjoint_candidates(run_dir: Path, unguarded: tuple, tmp_path: Path) -> None:
    _, dist, t = unguarded
    made = [generate_volumes(run_dir, 4, tmp_path, seed=3, fmt="npy", writers=0, rank=r, world_size=2,
                             guard=_guard(run_dir, t)) for r in (0, 1)]
    assert [len(m) for m in made] == [2, 2] and not {p.name for p in made[0]} & {p.name for p in made[1]}
    logs = [GuardLog(tmp_path / f"guard-s3-rank{r}.csv").read() for r in (0, 1)]
    assert not set(logs[0]) & set(logs[1])  # no candidate drawn twice
    for log in logs:  # each decision is the unguarded volume's distance against the threshold
        assert all(kept == (dist[int(name[-5:])] >= t) for name, kept in log.items() if int(name[-5:]) < 16)
