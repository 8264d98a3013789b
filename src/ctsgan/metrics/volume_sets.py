"""Sets of volumes to evaluate: a prepared dataset (optionally one split) or a folder of volumes.

A set is named on the command line as ``DIR`` or ``DIR:split`` (``split`` one of
:data:`ctsgan.data.dataset.SPLITS`). ``DIR`` holding ``manifest.csv`` is a prepared dataset
(int16 HU cubes, see :mod:`ctsgan.data.dataset`); any other folder is read as generated volumes:
every ``*.npy``, ``*.nii`` and ``*.nii.gz`` directly inside it, in sorted order.

Volumes of one evaluation are compared slice by slice, so they must share one shape: every
volume is resampled (trilinear, on HU values) to a common target shape, by default the shape of
the first real volume. The set records which volumes were resampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctsgan.data.dataset import SPLITS, PreparedDataset
from ctsgan.data.series import nifti_nonfinite_count
from ctsgan.io.volumes import read_volume

VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz")


@dataclass
class VolumeSet:
    """An ordered list of volume files with names.

    Attributes:
        spec: the set as the user named it (``DIR`` or ``DIR:split``).
        root: the folder.
        split: the split of a prepared dataset, or None.
        names: one name per volume (manifest id or file stem).
        paths: one file per volume.
        skipped: (path, reason) for files that could not be read (filled by :meth:`load`).
    """

    spec: str
    root: Path
    split: str | None
    names: list[str]
    paths: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """Volume ``index`` as float32 HU (z, y, x), resampled to ``shape`` when given.

        Raises:
            ValueError: the file is not a 3-D volume, or holds NaN / infinite values (message
                names the file); such a volume is skipped with that reason, never scored.
        """
        path = self.paths[index]
        try:
            vol = np.asarray(read_volume(path))
        except (OSError, ValueError, EOFError, RuntimeError) as e:
            raise ValueError(f"{path}: unreadable volume ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        while vol.ndim > 3 and vol.shape[0] == 1:
            vol = vol[0]
        if vol.ndim != 3:
            raise ValueError(f"{path}: expected a (z, y, x) volume, got shape {vol.shape}")
        vol = vol.astype(np.float32)
        # SimpleITK's NIfTI reader turns NaN into 0, so float NIfTI data is checked raw
        n_bad = nifti_nonfinite_count(path) or int(vol.size - np.count_nonzero(np.isfinite(vol)))
        if n_bad:
            raise ValueError(f"{path}: {n_bad} of {vol.size} voxels are NaN or infinite")
        if shape is not None and tuple(vol.shape) != tuple(shape):
            vol = resample_volume(vol, shape)
        return vol

    def shape_of(self, index: int) -> tuple[int, int, int]:
        """Shape of volume ``index`` as stored (reads only the header for .npy)."""
        path = self.paths[index]
        if path.suffix == ".npy":
            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[-3:])  # type: ignore[return-value]
        return tuple(self.load(index).shape)  # type: ignore[return-value]


def split_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``"DIR:split"`` -> (DIR, split); ``"DIR"`` -> (DIR, None). Only a known split name counts."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and tail in SPLITS and head:
        return Path(head), tail
    return Path(text), None


def open_volume_set(spec: str | Path) -> VolumeSet:
    """Open ``DIR``, ``DIR:split`` (prepared dataset) or a folder of .npy / .nii(.gz) volumes.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no volumes (or the split is empty).
    """
    root, split = split_spec(spec)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected a prepared dataset or a folder of volumes)")
    if (root / "manifest.csv").exists():
        ds = PreparedDataset(root, split)
        if len(ds) == 0:
            raise ValueError(f"{spec}: the prepared dataset has no volumes" + (f" in split {split!r}" if split else ""))
        return VolumeSet(str(spec), root, split, ds.ids, [root / r.path for r in ds.rows])
    if split is not None:
        raise ValueError(f"{spec}: a split was given but {root} has no manifest.csv (not a prepared dataset)")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(VOLUME_SUFFIXES))
    if not files:
        raise ValueError(f"{root}: no volumes (*.npy, *.nii, *.nii.gz) in this folder")
    names = [p.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".npy") for p in files]
    return VolumeSet(str(spec), root, None, names, files)


def resample_volume(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resampling of a (z, y, x) volume to ``shape`` (align_corners=False), float32.

    Args:
        volume: (D, H, W) array.
        shape: target (D', H', W').
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)
    return out[0, 0].numpy()
