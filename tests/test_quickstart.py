"""The quickstart pipeline and its learning numbers (realism summaries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ctsgan.data.realism import HU_CEIL, HU_FLOOR
from ctsgan.experiments.quickstart import (
    format_learning,
    pooled_histogram,
    reference_fractions,
    run_quickstart,
    structure_summary,
    summarise,
)
from training_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _chest(seed: int, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, size),) * 3, indexing="ij")
    vol = np.full((size,) * 3, -1000.0)
    vol[(yy / 0.8) ** 2 + (xx / 0.9) ** 2 < 1] = 40.0
    vol[((yy / 0.5) ** 2 + ((np.abs(xx) - 0.45) / 0.3) ** 2) < 1] = -850.0
    return (vol + rng.normal(0, 15, vol.shape)).astype(np.int16)


def test_real_volumes_against_themselves_have_zero_fraction_error() -> None:
    reals = [_chest(i) for i in range(3)]
    s = summarise(reals, pooled_histogram(reals), reference_fractions(reals))
    assert s.fraction_error == pytest.approx(0.0, abs=1e-12)
    assert s.n == 3 and s.wasserstein_hu < 10.0


def test_an_all_air_volume_counts_as_air_at_minus_1000() -> None:
    reals = [_chest(0)]
    ref = pooled_histogram(reals)
    s = summarise([np.full((8, 8, 8), -1024, np.int16)], ref, reference_fractions(reals))
    centres = np.arange(HU_FLOOR, HU_CEIL + 1)
    expected = stats.wasserstein_distance([-1000.0], centres, None, ref.astype(float))
    assert s.wasserstein_hu == pytest.approx(expected)
    assert all(v == 0.0 for v in s.fractions.values())


def test_structure_summary_sees_a_repeated_slice_and_copies() -> None:
    """Real: 4 noisy chests (z-variation from the 15 HU noise only). A repeated slice has z-variation
    ratio exactly 0; copies of one volume diversity 0; the real set against itself (1, 1)."""
    reals = [_chest(i) for i in range(4)]
    same = structure_summary(reals, reals)
    assert same["z_variation_ratio"] == pytest.approx(1.0) and same["diversity_ratio"] == pytest.approx(1.0)
    assert same["z_profile_error"] is None or same["z_profile_error"] == 0.0  # these chests have no z layout
    repeated = structure_summary(reals, [np.repeat(v[:1], v.shape[0], axis=0) for v in reals])
    assert repeated["z_variation_ratio"] < 0.01
    copies = structure_summary(reals, [reals[0]] * 4)
    assert copies["diversity_ratio"] < 0.01 and copies["z_variation_ratio"] > 0.5
    table = format_learning({
        "reference_fractions": {"lung": 0.2, "soft": 0.5, "fat": 0.2, "bone": 0.03},
        "trained": {"wasserstein_hu": 50.0, "wasserstein_hu_std": 3.0, "fraction_error": 0.01,
                    "fractions": {"lung": 0.2, "soft": 0.5, "fat": 0.2, "bone": 0.03}, "structure": repeated},
    })
    last = table.splitlines()[-1].split()
    assert last[:2] == ["trained", "G"] and float(last[3]) < 0.01


@pytest.mark.slow
def test_quickstart_runs_end_to_end_small(tmp_path: Path) -> None:
    lines: list[str] = []
    res = run_quickstart(tmp_path / "qs", n_phantoms=4, phantom_size=32, size=32, train_seconds=3.0, max_steps=4,
                         n_generate=2, threads=1, evaluate=False, progress=False, say=lines.append)
    assert len(res.generated) == 2 and all(p.exists() for p in res.generated)
    assert sorted(p.name for p in res.previews.iterdir()) == [f"{p.name.removesuffix('.nii.gz')}.png" for p in res.generated]
    assert (tmp_path / "qs" / "learning.json").exists()
    assert {"untrained", "trained", "reference_fractions"} <= set(res.learning)
    assert res.learning["trained"]["n"] == 4
    assert "trained G" in format_learning(res.learning)
    assert any(line.startswith("[5/5]") for line in lines)
    # the 3D structure numbers: stored, printed by the stage and in the learning table
    import json

    stored = json.loads((tmp_path / "qs" / "learning.json").read_text())
    for key in ("untrained", "trained"):
        st = stored[key]["structure"]
        assert isinstance(st["z_profile_error"], float) and isinstance(st["z_variation_ratio"], float)
        assert isinstance(st["diversity_ratio"], float)  # 4 generated and >= 2 training volumes
    assert any(line.strip().startswith("trained G: z-profile error") for line in lines)
    # 4 training steps: the generator cannot have learned anything along z yet
    assert any(line.strip().startswith("WARNING trained G:") for line in lines)
    assert "z-var ratio" in format_learning(res.learning)
