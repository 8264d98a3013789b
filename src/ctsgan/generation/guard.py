"""Privacy guard for generated volumes: never release one that is closer to a training patient
than two different training patients are to each other.

Synthetic CTs are made to be shared where the training scans cannot be. With a handful of
training patients a GAN can put out a volume that is nearly one of them (see
``docs/real_chest.md``: with five scans, 1-4 of every 8 volumes came closer to a training scan
than an unseen patient does). The guard measures each generated volume's distance to every
training scan and rejects it when it is under a threshold; ``ctsgan generate --guard DATASET``
then draws further volumes until ``n`` pass, and writes every decision to a log beside them.

Distance: mean absolute HU difference of :func:`ctsgan.metrics.structure.small_cube` cubes
(32^3, HU clipped to [-1024, 600], area-averaged), the measure of the memorization report of
``benchmarks/real_chest.py``. It compares layout (body outline, lungs, heart, bone) at about
1 cm, not texture: it does not prove privacy, it removes the volumes that show a training
patient's anatomy more closely than any other patient's scan would.

Threshold (``min_distance_hu=None``): the smallest distance from a training scan to a training
scan of a *different* patient (``patient_id`` of the manifest: two scans of one patient do not
set it). A released volume is then farther from every training scan than any training patient is
from the nearest other patient.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctsgan.data.dataset import PreparedDataset
from ctsgan.metrics.structure import small_cube

#: columns of the guard log (one row per candidate volume)
LOG_COLUMNS = ("volume", "kept", "distance_hu", "nearest_training", "threshold_hu")


def guard_log_path(out_dir: Path, seed: int, rank: int = 0, world_size: int = 1) -> Path:
    """Where a guarded generation run of ``seed`` logs its decisions: ``guard-s<seed>.csv``, or
    ``guard-s<seed>-rank<r>.csv`` per torchrun rank."""
    return out_dir / (f"guard-s{seed}-rank{rank}.csv" if world_size > 1 else f"guard-s{seed}.csv")


@dataclass(frozen=True)
class GuardVerdict:
    """One candidate volume's distance to its nearest training scan, and whether it passes."""

    nearest_id: str
    distance_hu: float
    threshold_hu: float

    @property
    def kept(self) -> bool:
        return self.distance_hu >= self.threshold_hu


def closest_other_patient(cubes: np.ndarray, patients: Sequence[str]) -> float:
    """Smallest mean |cube_i - cube_j| over pairs of scans of different patients.

    Raises:
        ValueError: fewer than two patients.
    """
    if len(set(patients)) < 2:
        raise ValueError(f"the automatic guard distance needs scans of at least two patients, got "
                         f"{len(set(patients))}; give one in HU instead")
    pid = np.asarray(patients)
    best = math.inf
    for i in range(len(cubes) - 1):  # one row of pairs at a time (300 scans: 2 s on this CPU)
        other = np.flatnonzero(pid[i + 1 :] != pid[i]) + i + 1
        if other.size:
            best = min(best, float(np.abs(cubes[other] - cubes[i]).mean(axis=(1, 2, 3)).min()))
    return best


class TrainingSetGuard:
    """Rejects generated volumes closer than ``threshold_hu`` to any training scan.

    Args:
        volumes: the training scans, int16 / float HU (z, y, x), any shapes; read one at a time.
        ids: one name per scan (the log's ``nearest_training``).
        patients: one patient id per scan (for the automatic threshold), default ``ids``.
        min_distance_hu: the threshold in HU; None: :func:`closest_other_patient`.
    """

    def __init__(
        self, volumes: Iterable[np.ndarray], ids: Sequence[str], patients: Sequence[str] | None = None,
        min_distance_hu: float | None = None,
    ) -> None:
        if patients is not None and len(patients) != len(ids):
            raise ValueError(f"need one patient per training volume, got {len(patients)} for {len(ids)}")
        if min_distance_hu is not None and not (math.isfinite(min_distance_hu) and min_distance_hu >= 0):
            raise ValueError(f"the guard distance must be a finite number of HU >= 0, got {min_distance_hu}")
        # one volume in memory at a time (``volumes`` may be lazy: 900 scans at 224^3 are 20 GB)
        cubes = [small_cube(np.asarray(v)) for v in volumes]
        if not cubes or len(cubes) != len(ids):
            raise ValueError(f"need one id per training volume and at least one volume, got {len(cubes)} volumes "
                             f"and {len(ids)} ids")
        self.ids = list(ids)
        self.cubes = np.stack(cubes)  # float32 HU
        self.threshold_hu = (closest_other_patient(self.cubes, list(patients or ids))
                             if min_distance_hu is None else float(min_distance_hu))

    @classmethod
    def from_dataset(cls, root: str | Path, split: str | None = "train", min_distance_hu: float | None = None) -> TrainingSetGuard:
        """The guard of a prepared dataset's ``split`` (default ``train``: what a run trains on)."""
        ds = PreparedDataset(root, split=split)
        if not len(ds):
            raise ValueError(f"{ds.root / 'manifest.csv'}: no volumes in split {split!r} to guard against")
        vols = (ds.load(i) for i in range(len(ds)))  # memory-mapped, read one at a time
        try:
            return cls(vols, ds.ids, [r.patient_id for r in ds.rows], min_distance_hu)
        except ValueError as e:
            raise ValueError(f"{ds.root / 'manifest.csv'} (split {split!r}): {e}") from None

    def check(self, volume_hu: np.ndarray) -> GuardVerdict:
        """The verdict on one generated volume (int16 HU, (z, y, x))."""
        c = small_cube(np.asarray(volume_hu))
        dist = np.abs(self.cubes - c[None]).mean(axis=(1, 2, 3))
        i = int(np.argmin(dist))
        return GuardVerdict(self.ids[i], float(dist[i]), self.threshold_hu)


class GuardLog:
    """Append-only CSV of guard decisions (:data:`LOG_COLUMNS`), flushed per row.

    Rows are appended as decisions are made, so after a kill the log holds every decision up to
    it (a torn last line is ignored on reading) and ``--resume`` skips the rejected volumes
    without generating them again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: io.TextIOWrapper | None = None

    def rows(self) -> list[dict[str, str]]:
        """The whole rows already in the log (none when there is no log).

        Raises:
            ValueError: the file is not a guard log (its header lacks the columns; names it).
        """
        if not self.path.is_file():
            return []
        lines = self.path.read_text().split("\n")[:-1]  # a last line without its newline is torn (a kill mid-write)
        reader = csv.DictReader(lines)
        if lines and not set(LOG_COLUMNS) <= set(reader.fieldnames or ()):
            raise ValueError(f"{self.path}: not a guard log (columns {', '.join(reader.fieldnames or ())}; "
                             f"expected {', '.join(LOG_COLUMNS)})")
        return [row for row in reader if row.get("kept") in ("1", "0")]

    def read(self) -> dict[str, bool]:
        """Volume name -> kept, of the decisions already in the log (later rows win)."""
        return {row["volume"]: row["kept"] == "1" for row in self.rows()}

    def thresholds(self) -> set[str]:
        """The thresholds (HU, as logged) the log's decisions were made with."""
        return {row["threshold_hu"] for row in self.rows() if row.get("threshold_hu")}

    def append(self, name: str, verdict: GuardVerdict) -> None:
        """Record one decision."""
        if self._file is None:
            text = self.path.read_text() if self.path.is_file() else ""
            if "\n" not in text:  # new, or killed while writing the header
                self._file = self.path.open("w", newline="")
                self._file.write(",".join(LOG_COLUMNS) + "\n")
            else:
                self._file = self.path.open("a", newline="")
                if not text.endswith("\n"):
                    self._file.write("\n")  # after a torn line: start a clean row
        csv.writer(self._file, lineterminator="\n").writerow(
            [name, int(verdict.kept), f"{verdict.distance_hu:.1f}", verdict.nearest_id, f"{verdict.threshold_hu:.1f}"])
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
