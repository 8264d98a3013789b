"""The CT-SGAN presets: few64 is cpu64 plus the settings measured on a handful of real scans."""

from __future__ import annotations

from pathlib import Path

from ctsgan.training.recipes import get_recipe

REPO = Path(__file__).resolve().parents[1]
FEW_SCAN_KEYS = {
    "augment": ["translation"],
    "real_scale": 0.25,
    "real_rotate_deg": 10.0,
    "real_elastic": 0.03,
    "g_noise": True,
    "g_noise_smooth": (1.5, 0.0),
    "memorization_threshold": 1.5,
    "memorization_repel": 3.0,
    "memorization_reject": False,
}


def _fields(preset_or_path: str | Path) -> dict:
    return get_recipe("ctsgan").load_config(str(preset_or_path)).model_dump()


def _diff(a: dict, b: dict) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_few64_is_cpu64_with_the_few_scan_settings() -> None:
    few, cpu = _fields("few64"), _fields("cpu64")
    # bookkeeping: the measured step count, milestones every 1000 steps
    assert _diff(few, cpu) == set(FEW_SCAN_KEYS) | {"steps", "checkpoint_every", "preview_every"}
    assert few["steps"] == 8000 and few["checkpoint_every"] == few["preview_every"] == 1000
    for key, value in FEW_SCAN_KEYS.items():
        got = few[key]
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key


def test_few64_is_the_configuration_measured_on_the_real_chests() -> None:
    """docs/real_chest.md's numbers for few64 come from this YAML trained for 8000 steps."""
    measured = _fields(REPO / "docs" / "results" / "real_chest_memorization" / "R_J_repel15x3_only.yaml")
    assert _diff(_fields("few64"), measured) == {"steps", "keep_last"}
