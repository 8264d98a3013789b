"""Sampling synthetic volumes from a trained checkpoint and writing them (NIfTI, DICOM, npy).

Volume ``i`` of seed ``K`` is drawn from its own seed ``volume_seed(K, i)``, so it does not
depend on how many volumes are requested nor on how they are split across processes. Under
``torchrun`` each rank writes a contiguous block of the indices (no overlap, no gaps).

At scale (``generate -n 10000``) three things keep it fast and safe:

- ``batch`` volumes per generator call (:meth:`GanRecipe.sample_volumes`; CT-SGAN runs R_v over
  the batch and G_slice across volume boundaries); volume i equals its batch-1 result up to
  float rounding, so the files do not depend on the batch;
- ``writers`` worker processes compress and write (NIfTI gzip costs about as much as
  generating a 64^3 volume on a CPU), fed through a bounded queue of ``2 * writers`` volumes so
  memory stays bounded whatever ``n`` is;
- every file is written atomically, the volume after its preview, so after a kill
  ``--resume`` skips the volumes whose file exists and makes the rest.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ctsgan.config import parse_choice
from ctsgan.data.hu import Knots, unit_to_hu_float
from ctsgan.data.hu_calibration import HuCalibration, load_calibration
from ctsgan.generation.writer import output_path as _output_path
from ctsgan.generation.writer import remove_output, remove_stale_temps, write_generated
from ctsgan.training.checkpoint import load_checkpoint, resolve_checkpoint
from ctsgan.training.distributed import launched_world, pick_device, shard
from ctsgan.training.recipe import GanRecipe, TrainConfig
from ctsgan.training.recipes import get_recipe

if TYPE_CHECKING:  # the guard pulls in scipy's statistics; imported only when a run is guarded
    from ctsgan.generation.guard import GuardLog, TrainingSetGuard


class OutputFormat(StrEnum):
    """How generated volumes are written."""

    NIFTI = "nifti"
    DICOM = "dicom"
    NPY = "npy"


class ComputeDtype(StrEnum):
    """Generator compute precision (bf16 runs under autocast)."""

    FP32 = "fp32"
    BF16 = "bf16"

    @property
    def torch(self) -> torch.dtype:
        return torch.float32 if self == ComputeDtype.FP32 else torch.bfloat16


def unit_to_hu_array(unit: torch.Tensor, lo: float, hi: float, knots: Knots = ()) -> np.ndarray:
    """Network output in [-1, 1] (any shape, any device) -> int16 HU numpy array.

    Raises:
        ValueError: the output holds NaN / infinite values (a broken checkpoint).

    The arithmetic runs where the tensor is (a GPU converts and then copies int16, half the
    bytes of float32) with the same float32 steps as :func:`ctsgan.data.hu.unit_to_hu`
    (piecewise linear through ``knots``, as there).
    """
    bad = int((~torch.isfinite(unit.detach())).sum())
    if bad:  # NaN survives clamp() and becomes an arbitrary int16: never write it
        raise ValueError(f"{bad} of {unit.numel()} generator output values are NaN or infinite")
    x = unit.detach().to(torch.float32).clamp(-1.0, 1.0)
    hu = cast(torch.Tensor, unit_to_hu_float(x, lo, hi, knots)) if knots else (x + 1.0) * 0.5 * (hi - lo) + lo
    hu16 = torch.round(hu).to(torch.int16)
    if hu16.device.type != "cuda":
        return hu16.cpu().numpy()
    # into page-locked memory from torch's caching host allocator: a 224^3 volume (22 MB) took
    # 5.4 ms to pageable memory on an H200 machine, a third of the generator's time per volume
    host = torch.empty(hu16.shape, dtype=torch.int16, pin_memory=True)
    host.copy_(hu16)
    return host.numpy()


@dataclass
class LoadedGenerator:
    """A trained generator ready to sample (eval mode, on its device)."""

    recipe: GanRecipe
    config: TrainConfig
    generator: nn.Module
    meta: dict[str, Any]
    step: int
    checkpoint: Path
    device: torch.device
    calibration: HuCalibration | None = None  # applied to every volume unless ``raw`` (data.hu_calibration)

    def to_hu(self, unit: torch.Tensor, raw: bool = False) -> np.ndarray:
        """int16 HU of one generated volume's network output, calibrated unless ``raw``."""
        hu = unit_to_hu_array(unit, *self.config.hu_window, self.config.hu_knots)
        return hu if raw or self.calibration is None else self.calibration.apply(hu)

    def sample(
        self, seed: int, *, slices: int | None = None, size: int | None = None,
        dtype: torch.dtype = torch.float32, chunk: int | None = None, raw: bool = False,
    ) -> np.ndarray:
        """One int16 HU volume (z, y, x) fully determined by ``seed`` (``raw``: without the HU calibration)."""
        unit = self.recipe.sample_volume(
            self.generator, self.config, seed, self.device, slices=slices, size=size, dtype=dtype, chunk=chunk
        )
        return self.to_hu(unit, raw)

    def sample_many(
        self, seeds: Sequence[int], *, slices: int | None = None, size: int | None = None,
        dtype: torch.dtype = torch.float32, chunk: int | None = None,
    ) -> list[np.ndarray]:
        """int16 HU volumes (z, y, x) of ``seeds``, generated together (see
        :meth:`GanRecipe.sample_volumes`); volume b equals :meth:`sample` of ``seeds[b]`` up to float rounding.

        One host array per volume, not one (B, z, y, x) array: a fresh 360 MB host buffer per
        batch of 16 224^3 volumes made batched generation slower end to end than batch 1 on an
        H200 machine (page faults), while volume-sized buffers are reused by the allocator.
        """
        if len(seeds) == 1:
            return [self.sample(seeds[0], slices=slices, size=size, dtype=dtype, chunk=chunk)]
        unit = self.recipe.sample_volumes(
            self.generator, self.config, list(seeds), self.device, slices=slices, size=size, dtype=dtype, chunk=chunk
        )
        return [self.to_hu(v) for v in unit]

    def spacing(self, volume_shape: tuple[int, ...]) -> tuple[float, float, float]:
        """Voxel spacing (z, y, x) mm of a generated volume.

        The training data's spacing, scaled by (training cube edge / output edge) when the
        model resamples (gan3d ``--size``); extra slices (``--slices``) keep the slice spacing.
        """
        sz, sy, sx = (float(s) for s in self.meta.get("spacing", (1.0, 1.0, 1.0)))
        f = float(self.meta.get("size", volume_shape[-1])) / volume_shape[-1]
        return (sz * f, sy * f, sx * f)


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its convolution weights stored channels-last: rank 4 (2D convolutions) as
    ``torch.channels_last``, rank 5 (3D, e.g. gan3d) as ``torch.channels_last_3d``, each in place.

    ``Module.to(memory_format=...)`` takes one format for all weights and fails on a module that
    holds both kinds (CT-SGAN with ``g_head``: 2D G_slice, 3D head).
    """
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() in formats:
                p.data = p.data.contiguous(memory_format=formats[p.dim()])
    return module


def load_generator(
    checkpoint: str | Path, device: str | torch.device = "cpu", channels_last: bool = True, optimize: bool = True,
    calibrated: bool = True,
) -> LoadedGenerator:
    """Checkpoint file or run dir -> the generator of its model, in eval mode on ``device``.

    ``optimize``: use the recipe's inference form (CT-SGAN: BatchNorm folded into the
    convolutions) and channels-last memory layout. ``calibrated``: apply the checkpoint's HU
    calibration (:mod:`ctsgan.data.hu_calibration`) when it has one.
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    recipe = get_recipe(state["model"])
    config = recipe.config_cls.from_dict(state["config"], source=f"{path} (config)")
    dev = device if isinstance(device, torch.device) else pick_device(device, launched_world()[2])
    gen = recipe.build_networks(config).generator
    gen.load_state_dict(state.get("generator_ema", state["generator"]))  # the EMA weights when the run kept them
    gen.eval()
    if optimize:
        gen = recipe.inference_generator(gen)
    gen.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest kernels once
    if channels_last:
        to_channels_last(gen)
    step = int(state["step"])
    calibration = load_calibration(path, step) if calibrated else None
    if calibrated and calibration is None and config.hu_calibration:
        warnings.warn(f"{path}: the run asks for an HU calibration but this checkpoint has none "
                      f"(an intermediate or interrupted one?): writing the generator's raw HU; "
                      f"`ctsgan calibrate --checkpoint {path}` fits it", stacklevel=2)
    return LoadedGenerator(recipe, config, gen, dict(state["meta"]), step, path, dev, calibration)


def volume_seed(seed: int, index: int) -> int:
    """The seed of volume ``index`` in a generation run with seed ``seed`` (63-bit)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def volume_name(seed: int, index: int) -> str:
    """File / folder name of volume ``index`` of seed ``seed``."""
    return f"synthetic-s{seed}-{index:05d}"


def output_path(out_dir: Path, name: str, fmt: OutputFormat) -> Path:
    """Where volume ``name`` is written: ``<name>.nii.gz``, ``<name>.npy`` or the folder ``<name>/``."""
    return _output_path(out_dir, name, OutputFormat(fmt).value)


def default_writers(device: torch.device | str = "cpu") -> int:
    """Writer processes when none are asked for.

    CUDA: the GPU generates, so every core but one (the one feeding the GPU) can compress, 1..8.
    CPU: the generator already keeps the cores busy; one writer per 4 cores, at least one (its
    fsync waits and the npy copies overlap generation; measured on 2 loaded cores: npy end to
    end 1.01x of generator-only with one writer thread, 1.92x with none; NIfTI within noise).
    """
    cores = os.cpu_count() or 2
    if torch.device(device).type == "cuda":
        return max(1, min(8, cores - 1))
    return max(1, min(8, cores // 4))


def _writer_init() -> None:
    """Writer process set-up: SimpleITK (when installed; npy needs none) on one thread."""
    try:
        import SimpleITK as sitk
    except ImportError:
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


class VolumeWriter:
    """Writes generated volumes in ``writers`` worker processes behind a bounded queue.

    At most ``max_pending`` volumes (default ``2 * writers``) wait or are being written; a
    :meth:`submit` beyond that first waits for the oldest, so memory stays bounded. A failed
    write raises in the caller (at the next :meth:`submit` or at :meth:`close`) naming the volume.
    ``writers=0`` writes in the calling process (no workers).

    Workers are forked where the platform can (Linux, macOS: they start in milliseconds and
    re-import nothing, so a user script without a ``__main__`` guard works too), else spawned.
    They run numpy, SimpleITK, pydicom and PIL only, never torch, with SimpleITK held to one
    thread (compression is sequential; it also keeps a pool inherited through fork unused).

    ``threads=True`` uses threads instead (for ``.npy``: the write is a memory copy that
    releases the GIL, and shipping a 22 MB 224^3 volume to a process costs more than writing it:
    measured on an H200 machine, 8 writer processes made 16 volumes/s, one in-process writer 26).
    """

    def __init__(self, writers: int, max_pending: int | None = None, threads: bool = False) -> None:
        if writers < 0:
            raise ValueError(f"writers must be >= 0, got {writers}")
        self.writers = writers
        self.max_pending = max_pending or max(1, 2 * writers)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._pool: Executor | None = None
        if writers and threads:
            self._pool = ThreadPoolExecutor(writers, thread_name_prefix="ctsgan-writer")
        elif writers:
            self._pool = ProcessPoolExecutor(writers, mp_context=multiprocessing.get_context(method), initializer=_writer_init)
        self._pending: collections.deque[tuple[str, Future[Path]]] = collections.deque()
        self.written: list[Path] = []

    def _wait_oldest(self) -> None:
        name, fut = self._pending.popleft()
        try:
            self.written.append(fut.result())
        except Exception as e:
            raise RuntimeError(f"{name}: writing failed: {type(e).__name__}: {e}") from e

    def submit(self, out_dir: Path, name: str, hu: np.ndarray, spacing: Sequence[float], fmt: str, preview: bool) -> None:
        """Write one volume (int16 HU, (z, y, x)), in a worker when there are workers."""
        if self._pool is None:
            self.written.append(write_generated(out_dir, name, hu, spacing, fmt, preview))
            return
        while len(self._pending) >= self.max_pending:
            self._wait_oldest()
        self._pending.append((name, self._pool.submit(write_generated, out_dir, name, hu, tuple(spacing), fmt, preview)))

    def close(self) -> list[Path]:
        """Wait for every write; returns the paths in submission order."""
        try:
            while self._pending:
                self._wait_oldest()
        finally:
            self._pending.clear()  # after a failure: the rest is cancelled, not waited for again
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        return self.written


def write_volume_batches(
    indices: Iterable[int],
    seed: int,
    out_dir: Path,
    fmt: OutputFormat,
    sample: Callable[[Sequence[int]], Sequence[np.ndarray]],
    spacing: Callable[[tuple[int, ...]], tuple[float, float, float]],
    *,
    batch: int = 1,
    writers: int = 0,
    previews: bool = True,
    progress: Any = None,
    keep: Callable[[int, np.ndarray], bool] | None = None,
    quota: int | None = None,
) -> list[Path]:
    """Generate volumes ``indices`` of run seed ``seed`` ``batch`` at a time and write them.

    Args:
        sample: volume indices -> one int16 HU volume (z, y, x) per index, volume i drawn from
            ``volume_seed(seed, i)`` (e.g. via :meth:`LoadedGenerator.sample_many`).
        spacing: volume shape -> voxel spacing (z, y, x) mm.
        batch: volumes per ``sample`` call.
        writers: writer processes (threads for ``npy``; 0: write in this process). At most
            ``max(2 * writers, 2 * batch)`` volumes wait in memory.
        progress: a tqdm bar to advance by one per volume written, or None.
        keep: index, volume -> whether to write it (e.g. the privacy guard); asked in index
            order, never after ``quota`` volumes are written. None: write every volume.
        quota: stop once this many volumes are written (None: when ``indices`` run out); the
            rest of the last batch is dropped unasked, so what is written does not depend on ``batch``.

    Returns:
        paths written, in index order.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    # room for two batches: the writers drain one while the generator makes the next (a queue
    # of 2 * writers < batch volumes stalled the generator on every batch: measured on an H200)
    writer = VolumeWriter(writers, max_pending=max(2 * writers, 2 * batch), threads=fmt == OutputFormat.NPY)
    todo = iter(indices)
    n_written = 0
    try:
        while quota is None or n_written < quota:
            part = list(itertools.islice(todo, batch))
            if not part:
                break
            for i, vol in zip(part, sample(part), strict=True):
                if quota is not None and n_written >= quota:
                    break
                if keep is None or keep(i, vol):
                    writer.submit(out_dir, volume_name(seed, i), vol, spacing(vol.shape), fmt.value, previews)
                    n_written += 1
                    if progress is not None:
                        progress.update(1)
    finally:
        written = writer.close()
    return written


def existing_outputs(out_dir: Path, seed: int, indices: Sequence[int], fmt: OutputFormat) -> list[Path]:
    """The volumes ``indices`` of ``seed`` that already exist in ``out_dir``."""
    if not out_dir.is_dir():
        return []
    return [p for i in indices if (p := output_path(out_dir, volume_name(seed, i), fmt)).exists()]


#: :func:`generate_volumes` with a guard gives up after this many candidates per volume wanted
GUARD_MAX_TRIES = 20


def guarded_candidates(n: int, rank: int, world_size: int, max_tries: int) -> list[int]:
    """The volume indices a guarded rank draws from, in order: its share of ``0 .. n-1``
    (:func:`ctsgan.training.distributed.shard`), then ``n + rank``, ``n + rank + world_size``, ...
    (disjoint between ranks), ``max_tries`` per volume of its share in all."""
    own = list(shard(n, rank, world_size))
    extra = (max_tries - 1) * len(own)
    return own + list(range(n + rank, n + rank + world_size * extra, world_size))


def _some(paths: Sequence[Path]) -> str:
    """The first three names of ``paths`` and how many more."""
    return ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def guarded_logs(out_dir: Path, seed: int) -> list[Path]:
    """The guard logs of ``seed`` in ``out_dir`` (any number of ranks; names of
    :func:`ctsgan.generation.guard.guard_log_path`, globbed here so that unguarded runs never import the guard)."""
    if not out_dir.is_dir():
        return []
    return sorted([*out_dir.glob(f"guard-s{seed}.csv"), *out_dir.glob(f"guard-s{seed}-rank*.csv")])


def plan_guarded(
    out_dir: Path, seed: int, n: int, rank: int, world_size: int, fmt: OutputFormat, guard: TrainingSetGuard, *,
    resume: bool, overwrite: bool, max_tries: int,
) -> tuple[list[int], int, GuardLog, list[int]]:
    """What a guarded rank has to do: (candidate indices to draw, volumes still to write, its log,
    candidates whose earlier outputs ``overwrite`` removes once the checkpoint has loaded).

    A fresh run needs a folder without this seed's candidates or log. ``resume`` continues a run
    whose log was made with the same threshold: a volume on disk counts only where the log passed
    it, and the rejected ones are not drawn again.

    Raises:
        ValueError: outputs or a log of this seed already there (without ``resume`` /
            ``overwrite``), a log of another threshold, a foreign log, or (``resume``) volumes on
            disk the log did not pass, named.
    """
    from ctsgan.generation.guard import GuardLog, guard_log_path

    if max_tries < 1:
        raise ValueError(f"guard_max_tries must be >= 1, got {max_tries}")
    quota = len(shard(n, rank, world_size))
    cands = guarded_candidates(n, rank, world_size, max_tries)
    log = GuardLog(guard_log_path(out_dir, seed, rank, world_size))
    present = [i for i in cands if output_path(out_dir, volume_name(seed, i), fmt).exists()] if out_dir.is_dir() else []
    if overwrite:
        return cands, quota, log, present
    if not resume:
        if present or log.path.exists():
            what = log.path.name if log.path.exists() else _some([output_path(out_dir, volume_name(seed, i), fmt) for i in present])
            raise ValueError(f"{out_dir} already holds a guarded run of seed {seed} ({what}): pass --resume to continue it, "
                             "--overwrite to redo it, or choose another --out or --seed")
        return cands, quota, log, []
    decided = log.read()
    logged = log.thresholds()
    if logged and logged != {f"{guard.threshold_hu:.1f}"}:
        raise ValueError(f"{log.path}: decided with threshold {', '.join(sorted(logged))} HU, this run's is "
                         f"{guard.threshold_hu:.1f} HU: resume with the same --guard data and --guard-distance, or --overwrite")
    unvetted = [i for i in present if decided.get(volume_name(seed, i)) is not True]
    if unvetted:
        raise ValueError(f"{out_dir}: {len(unvetted)} volumes of seed {seed} on disk were not passed by this guard "
                         f"({_some([output_path(out_dir, volume_name(seed, i), fmt) for i in unvetted])}): "
                         "--overwrite to redo the run, or choose another --out or --seed")
    remove_stale_temps(out_dir, [volume_name(seed, i) for i in cands])
    done = set(present)
    todo = [i for i in cands if i not in done and decided.get(volume_name(seed, i)) is not False]
    return todo, max(0, quota - len(done)), log, []


def generate_volumes(
    checkpoint: str | Path,
    n: int,
    out_dir: str | Path,
    seed: int = 0,
    fmt: str = "nifti",
    slices: int | None = None,
    size: int | None = None,
    *,
    device: str = "auto",
    dtype: str = "fp32",
    chunk: int | None = None,
    previews: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    batch: int | None = None,
    writers: int | None = None,
    calibrated: bool = True,
    guard: TrainingSetGuard | None = None,
    guard_max_tries: int = GUARD_MAX_TRIES,
) -> list[Path]:
    """Generate volumes ``0 .. n-1`` (this rank's share) and write them with previews.

    Args:
        checkpoint: checkpoint file or run dir (its latest checkpoint).
        n: total number of volumes (over all ranks).
        out_dir: writes ``<name>.nii.gz`` / ``<name>.npy`` / ``<name>/slice-XXXX.dcm`` and
            ``previews/<name>.png``; names are ``synthetic-s<seed>-<index:05d>``.
        seed: run seed; volume i uses :func:`volume_seed` (seed, i).
        fmt: ``nifti``, ``dicom`` or ``npy``.
        slices: axial slices per volume (models that support it, e.g. CT-SGAN: any L >= 3).
        size: output edge (models that support resampling, e.g. gan3d).
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: ``fp32`` or ``bf16``.
        chunk: 2D slices per generator call (default: the model's).
        rank, world_size: this process's share (default: from torchrun's environment).
        overwrite: replace volumes of the same names already in ``out_dir``; without it (and
            without ``resume``) such volumes are an error (nothing is written).
        resume: skip the volumes whose file already exists (complete: files are written
            atomically, the volume after its preview) and make the others; e.g. after a kill.
        batch: volumes per generator call (default: the model's for the device, see
            :meth:`GanRecipe.default_batch`); volume i does not depend on it (up to float rounding).
        writers: writer processes (default :func:`default_writers`; 0: write in this process).
        calibrated: apply the checkpoint's HU calibration when it has one
            (:mod:`ctsgan.data.hu_calibration`); False: the generator's own HU.
        guard: the privacy guard (:mod:`ctsgan.generation.guard`): a volume closer to a
            training scan than its threshold is not written, and further volumes (indices from
            ``n`` on, see :func:`guarded_candidates`) are drawn until this rank's share is
            written; every decision goes to ``out_dir/guard-s<seed>.csv`` (``-rank<r>`` under
            torchrun), which ``resume`` reads to skip the rejected volumes (:func:`plan_guarded`).
        guard_max_tries: with ``guard``, give up after this many candidates per volume wanted.

    Returns:
        paths written by this rank (volume files or DICOM folders), in index order; with
        ``resume``, only the volumes made by this call.

    Raises:
        ValueError: ``out_dir`` is a file, or already holds volumes (or a guard log) this run
            would write (named) and neither ``overwrite`` nor ``resume`` is set, or both are.
        RuntimeError: with ``guard``, fewer volumes than wanted passed it within
            ``guard_max_tries`` candidates each (those that passed are written).
    """
    fmt_e = parse_choice(OutputFormat, fmt, "format")
    dtype_e = parse_choice(ComputeDtype, dtype, "dtype")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    env_rank, env_world, _ = launched_world()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    indices: Sequence[int] = shard(n, rank, world_size)
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other (replace existing volumes, or keep them)")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if writers is not None and writers < 0:
        raise ValueError(f"writers must be >= 0, got {writers}")
    quota: int | None = None
    log: GuardLog | None = None
    stale: list[int] = []
    if guard is not None:
        indices, quota, log, stale = plan_guarded(out_dir, seed, n, rank, world_size, fmt_e, guard, resume=resume,
                                                  overwrite=overwrite, max_tries=guard_max_tries)
        if quota == 0:
            return []
    else:
        guarded = guarded_logs(out_dir, seed)
        if guarded:
            raise ValueError(f"{out_dir} holds a guarded run of seed {seed} ({guarded[0].name}): pass --guard DATASET "
                             "to continue or redo it, or choose another --out or --seed")
        existing = existing_outputs(out_dir, seed, indices, fmt_e) if not overwrite else []
        if existing and not resume:  # this rank's share only: other ranks may already be writing theirs
            raise ValueError(f"{out_dir} already holds {len(existing)} of the volumes to write ({_some(existing)}); "
                             "pass --overwrite to replace them, --resume to keep them and make the rest, "
                             "or choose another --out or --seed")
        if resume:
            done = {p.name for p in existing}
            remove_stale_temps(out_dir, [volume_name(seed, i) for i in indices])
            indices = [i for i in indices if output_path(out_dir, volume_name(seed, i), fmt_e).name not in done]
            if not indices:
                return []
    loaded = load_generator(checkpoint, device, calibrated=calibrated)
    out_dir.mkdir(parents=True, exist_ok=True)
    if log is not None and overwrite:  # only now that the checkpoint loaded: the earlier guarded run goes
        for i in stale:
            remove_output(out_dir, volume_name(seed, i), fmt_e.value)
        log.path.unlink(missing_ok=True)
    batch = batch or loaded.recipe.default_batch(loaded.config, loaded.device)
    writers = default_writers(loaded.device) if writers is None else writers
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices) if quota is None else quota, desc=f"generate (rank {rank})" if world_size > 1 else "generate", unit="vol")

    def sample(part: Sequence[int]) -> list[np.ndarray]:
        try:
            return loaded.sample_many([volume_seed(seed, i) for i in part], slices=slices, size=size,
                                      dtype=dtype_e.torch, chunk=chunk)
        except ValueError as e:
            names = volume_name(seed, part[0]) + (f" .. {volume_name(seed, part[-1])}" if len(part) > 1 else "")
            raise ValueError(f"{names}: {e}; not written ({loaded.checkpoint})") from None

    def keep(i: int, vol: np.ndarray) -> bool:
        assert guard is not None and log is not None
        verdict = guard.check(vol)
        log.append(volume_name(seed, i), verdict)
        return verdict.kept

    try:
        written = write_volume_batches(
            indices, seed, out_dir, fmt_e, sample, loaded.spacing, batch=batch, writers=writers,
            previews=previews, progress=bar, keep=None if guard is None else keep, quota=quota,
        )
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    if guard is not None and log is not None and quota is not None and len(written) < quota:
        decided = log.read()  # this run and the ones it resumed
        raise RuntimeError(f"the guard let {sum(decided.values())} of {len(shard(n, rank, world_size))} volumes through in "
                           f"{len(decided)} candidates (threshold {guard.threshold_hu:.1f} HU; decisions in {log.path}): "
                           "the generator stays close to its training scans; what passed is written")
    return written

