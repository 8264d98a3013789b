"""Inception features of whole volume sets, with an on-disk cache.

Features of a volume depend on the file's content, the target shape it is resampled to, the
plane, the slice indices, the channel convention and the network; all of these make the cache
key, so a real set evaluated against several generators is run through Inception once (and a
generated file that is a byte copy of a real one reuses its features).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctsgan.io.atomic import atomic_save_npy
from ctsgan.metrics.fid_2p5d import PLANE_AXIS, Plane
from ctsgan.metrics.inception import InceptionFeatures, SliceChannels, plane_slices
from ctsgan.metrics.memorization import downsample_for_ssim
from ctsgan.metrics.structure import VolumeStructure, volume_structure
from ctsgan.metrics.volume_sets import VolumeSet

log = logging.getLogger(__name__)


CACHE_ENV = "CTSGAN_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where real-set features are kept between evaluations: ``$CTSGAN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ctsgan/features``, else ``~/.cache/ctsgan/features``.

    A per-user folder rather than one inside the real dataset: real data is often read-only or
    shared (``../shared/data``), and the keys are content hashes, so one folder serves every
    real set and a moved or copied dataset still hits.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ctsgan" / "features"


class FeatureCache:
    """``.npy`` files under ``root`` named by a hash of everything the features depend on.

    Args:
        root: cache folder, or None for no cache.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"

    def peek(self, key: str) -> np.ndarray | None:
        """The cached array for ``key``, or None (counts a hit when found)."""
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("feature cache %s unreadable (%s); recomputing", path, e)
            return None
        self.hits += 1
        return arr

    def get(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for ``key``, else ``compute()`` (then stored)."""
        path = self._path(key)
        cached = self.peek(key)
        if cached is not None:
            return cached
        arr = compute()
        self.misses += 1
        if path is None:
            return arr
        atomic_save_npy(path, arr)
        return arr


def file_identity(path: Path) -> str:
    """SHA-1 of the file's bytes: moved or copied volumes share their cached features."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` slice indices spread evenly over [0, n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return [int(v) for v in np.round(np.linspace(0, n - 1, k)).astype(int)]


@dataclass
class SetFeatures:
    """Features of the readable volumes of one set.

    Attributes:
        name: the set's label (``real``, a fake set's name, ``train``).
        volumes: names of the volumes that could be read, in set order.
        axial: per volume (D, 2048): every axial slice, in order (the paper's slice FID / IS).
        planes: plane -> per volume (n, 2048) at the 2.5D slice stride (empty if not asked).
        descriptors: (V, 2048) mean feature over ``mem_indices`` axial slices (memorization).
        small: per volume a downsampled cube in [0, 1] for SSIM (memorization).
        middle: per volume its middle axial slice, HU (figures).
        structure: per volume its structure summary (z-profile, z-variation, 32^3 cube; see
            :mod:`ctsgan.metrics.structure`), of the volume resampled to the common shape.
        skipped: (path, reason) of volumes that could not be read.
    """

    name: str
    volumes: list[str] = field(default_factory=list)
    axial: list[np.ndarray] = field(default_factory=list)
    planes: dict[Plane, list[np.ndarray]] = field(default_factory=dict)
    descriptors: np.ndarray | None = None
    small: list[np.ndarray] = field(default_factory=list)
    middle: list[np.ndarray] = field(default_factory=list)
    structure: list[VolumeStructure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def compute_set_features(
    name: str,
    volset: VolumeSet,
    extractor: InceptionFeatures,
    shape: tuple[int, int, int],
    cache: FeatureCache,
    *,
    channels: SliceChannels = SliceChannels.REPLICATE,
    all_axial: bool = True,
    plane_stride: int | None = None,
    mem_slices: int | None = None,
    ssim_size: int | None = None,
    keep_middle: bool = True,
    structure_distances: Sequence[int] | None = None,
    progress: bool = False,
) -> SetFeatures:
    """Run Inception on the slices of every volume of ``volset`` (each resampled to ``shape``).

    Args:
        shape: common (D, H, W) every volume is resampled to.
        all_axial: features of all D axial slices (slice FID / IS).
        plane_stride: features of every ``plane_stride``-th slice in the three planes (2.5D FID);
            None: skip.
        mem_slices: descriptors from this many evenly spaced axial slices; None: skip.
        ssim_size: downsampled cube edge for SSIM; None: skip.
        keep_middle: keep each volume's middle axial slice (for figures).
        structure_distances: slice distances for the structure summaries (each < D); None: skip
            them. No Inception pass: a volume whose features are all cached is still read.
    """
    from tqdm import tqdm

    out = SetFeatures(name)
    if plane_stride is not None:
        out.planes = {p: [] for p in Plane}
    descriptors = []
    mem_idx = evenly_spaced(shape[0], mem_slices) if mem_slices else []
    base_key = f"{extractor.identity()}|{tuple(shape)}|{SliceChannels(channels).value}"
    for i in tqdm(range(len(volset)), desc=f"features {name}", disable=not progress, unit="vol"):
        path = volset.paths[i]
        try:
            ident = file_identity(path)
            loaded: list[np.ndarray] = []

            def volume(i: int = i, loaded: list[np.ndarray] = loaded) -> np.ndarray:
                if not loaded:
                    loaded.append(volset.load(i, shape))
                return loaded[0]

            def key(axis: int, idx: Sequence[int], ident: str = ident) -> str:
                return f"{ident}|{base_key}|{axis}|{list(idx)}"

            def feats(axis: int, idx: Sequence[int]) -> np.ndarray:
                # rows of an already cached full plane serve any subset of its slices
                full = cache.peek(key(axis, range(shape[axis]))) if len(idx) < shape[axis] else None
                if full is not None:
                    return full[list(idx)]
                return cache.get(key(axis, idx), lambda: extractor.features(plane_slices(volume(), axis, idx, channels)))

            axial = feats(0, range(shape[0])) if all_axial else None
            planes: dict[Plane, np.ndarray] = {}
            if plane_stride is not None:
                for plane in Plane:
                    axis = PLANE_AXIS[plane]
                    if axial is not None and axis == 0:
                        planes[plane] = axial[::plane_stride]
                    else:
                        planes[plane] = feats(axis, range(0, shape[axis], plane_stride))
            descriptor = None
            if mem_slices:
                rows = axial[mem_idx] if axial is not None else feats(0, mem_idx)
                descriptor = rows.astype(np.float64).mean(axis=0)
            small = downsample_for_ssim(volume(), ssim_size) if ssim_size else None
            middle = np.array(volume()[shape[0] // 2]) if keep_middle else None
            summary = volume_structure(volume(), distances=structure_distances) if structure_distances else None
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("skipping %s: %s", path, e)
            out.skipped.append((str(path), str(e)))
            continue
        # appended only once everything of this volume worked, so all lists stay aligned
        out.volumes.append(volset.names[i])
        if middle is not None:
            out.middle.append(middle)
        if axial is not None:
            out.axial.append(axial)
        for plane, f in planes.items():
            out.planes[plane].append(f)
        if descriptor is not None:
            descriptors.append(descriptor)
        if small is not None:
            out.small.append(small)
        if summary is not None:
            out.structure.append(summary)
    if mem_slices:
        out.descriptors = np.stack(descriptors) if descriptors else np.zeros((0, 2048))
    return out
