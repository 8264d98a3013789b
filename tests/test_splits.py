"""Stratified, patient-grouped, seeded splits."""

from __future__ import annotations

from collections import Counter

import pytest

from ctsgan.data.splits import assign_splits, split_counts


@pytest.mark.parametrize(
    ("n", "expect"),
    [(1200, [900, 150, 150]), (8, [6, 1, 1]), (3, [1, 1, 1]), (4, [2, 1, 1]), (2, [1, 1, 0]), (1, [1, 0, 0]), (0, [0, 0, 0])],
)
def test_split_counts(n: int, expect: list[int]) -> None:
    assert split_counts(n) == expect


def test_bad_fractions() -> None:
    with pytest.raises(ValueError, match="train, validation, test"):
        split_counts(10, (0.5, 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        split_counts(10, (1.0, -0.1, 0.1))


def _paper_like() -> tuple[list[str], list[str], list[bool]]:
    """600 NLST patients without nodules, 600 LIDC with; some patients have two scans."""
    patients, sources, nods = [], [], []
    for i in range(600):
        for src, has in (("nlst", False), ("lidc-idri", True)):
            reps = 2 if i % 10 == 0 else 1
            for _ in range(reps):
                patients.append(f"{src}-{i}")
                sources.append(src)
                nods.append(has)
    return patients, sources, nods


def test_paper_proportions_stratified_and_grouped() -> None:
    patients, sources, nods = _paper_like()
    splits = assign_splits(patients, sources, nods, seed=3)
    per_patient: dict[str, set[str]] = {}
    for p, s in zip(patients, splits, strict=True):
        per_patient.setdefault(p, set()).add(s)
    assert all(len(v) == 1 for v in per_patient.values())  # a patient never in two splits
    by_patient = Counter(next(iter(v)) for v in per_patient.values())
    assert by_patient == {"train": 900, "validation": 150, "test": 150}
    # each stratum is split 450 / 75 / 75
    for src in ("nlst", "lidc-idri"):
        c = Counter(next(iter(per_patient[p])) for p in per_patient if p.startswith(src))
        assert c == {"train": 450, "validation": 75, "test": 75}


def test_seeded() -> None:
    patients, sources, nods = _paper_like()
    a = assign_splits(patients, sources, nods, seed=1)
    assert a == assign_splits(patients, sources, nods, seed=1)
    assert a != assign_splits(patients, sources, nods, seed=2)


def test_tiny_datasets_work() -> None:
    assert sorted(assign_splits(["a", "b", "c"], ["x", "x", "y"], [True, False, False])) == ["test", "train", "validation"]
    assert assign_splits(["a", "a"], ["x", "x"], [True, False]) == ["train", "train"]
    assert assign_splits([], [], []) == []
