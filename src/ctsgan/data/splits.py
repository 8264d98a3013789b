"""Train / validation / test splits: stratified by (source, has_nodule), grouped by patient, seeded.

How :func:`assign_splits` works:

1. Volumes are grouped by patient; a patient's stratum is (source of its first volume, whether
   any of its volumes has a nodule). A patient's volumes always share one split.
2. Split sizes (in patients) come from the fractions by largest remainder. When a split with a
   non-zero fraction would get nobody while another has two or more patients, one patient moves
   there (so 3 patients give 1 / 1 / 1, 8 give 6 / 1 / 1).
3. Strata (in seeded random order), each with its patients in seeded random order, are laid end
   to end; walking that sequence, each patient goes to the split furthest behind its target
   (target share of the patients seen so far minus patients given). This is systematic
   sampling: every stratum is spread over the splits in proportion, and the split sizes of
   step 2 are met exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctsgan.data.dataset import SPLITS

DEFAULT_FRACTIONS = (0.75, 0.125, 0.125)


def split_counts(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[int]:
    """Patients per split for ``n`` patients (step 2 of the module doc)."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (len(SPLITS),) or np.any(f < 0) or f.sum() <= 0:
        raise ValueError(f"fractions must be {len(SPLITS)} non-negative numbers ({', '.join(SPLITS)}), got {fractions}")
    f = f / f.sum()
    exact = f * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for k in order[: n - int(counts.sum())]:
        counts[k] += 1
    for k in range(len(counts)):
        if f[k] > 0 and counts[k] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] >= 2:
                counts[donor] -= 1
                counts[k] += 1
    return [int(c) for c in counts]


def assign_splits(
    patients: Sequence[str],
    sources: Sequence[str],
    has_nodule: Sequence[bool],
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> list[str]:
    """Split name for every volume (module doc).

    Args:
        patients, sources, has_nodule: one entry per volume.
        seed: the same seed and inputs give the same splits.
        fractions: (train, validation, test), normalised to sum 1.

    Returns:
        one of ``SPLITS`` per volume, in input order.
    """
    if not (len(patients) == len(sources) == len(has_nodule)):
        raise ValueError("patients, sources and has_nodule must have the same length")
    strata: dict[tuple[str, bool], list[str]] = {}
    stratum_of: dict[str, tuple[str, bool]] = {}
    any_nodule: dict[str, bool] = {}
    first_source: dict[str, str] = {}
    for p, s, h in zip(patients, sources, has_nodule, strict=True):
        any_nodule[p] = any_nodule.get(p, False) or bool(h)
        first_source.setdefault(p, s)
    for p in sorted(any_nodule):
        key = (first_source[p], any_nodule[p])
        stratum_of[p] = key
        strata.setdefault(key, []).append(p)
    rng = np.random.default_rng(seed)
    keys = sorted(strata)
    sequence: list[str] = []
    for ki in rng.permutation(len(keys)):
        members = strata[keys[int(ki)]]
        sequence.extend(members[int(i)] for i in rng.permutation(len(members)))
    n = len(sequence)
    counts = np.asarray(split_counts(n, fractions), dtype=np.float64)
    given = np.zeros(len(SPLITS))
    split_of: dict[str, str] = {}
    for i, p in enumerate(sequence, start=1):
        deficit = counts * i / n - given
        deficit[given >= counts] = -np.inf
        k = int(np.argmax(deficit))
        given[k] += 1
        split_of[p] = SPLITS[k]
    return [split_of[p] for p in patients]
