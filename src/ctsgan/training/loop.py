"""The shared GAN training loop (model-agnostic: the model is a registered recipe).

Per step: ``d_steps`` x (real batch -> recipe D loss -> backward -> average grads across
ranks -> D update), then one G update with D frozen. Around it: resolved config in the run dir,
checkpoints every k steps (atomic, keep last k, rank 0 writes then barrier), exact resume,
JSONL + TensorBoard scalars, preview PNGs at fixed seeds, a tqdm bar, and a stop with a clear
message on non-finite losses (the last good checkpoint stays as it was).
"""

from __future__ import annotations

import copy
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.hu import unit_to_hu
from ctsgan.data.hu_calibration import (
    HuCalibration,
    calibration_path,
    calibration_reals,
    calibration_seeds,
    fit_hu_calibration,
    save_calibration,
)
from ctsgan.io.atomic import atomic_write_text
from ctsgan.metrics.structure import (
    VolumeStructure,
    copy_distances,
    structure_metrics_from_summaries,
    volume_structure,
)
from ctsgan.training import distributed as D
from ctsgan.training.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from ctsgan.training.recipe import GanNetworks, GanRecipe, RealSampler, TrainConfig
from ctsgan.training.recipes import get_recipe
from ctsgan.training.run_lock import run_dir_lock
from ctsgan.training.run_log import RunLogger

CONFIG_FILE = "config.yaml"
#: config keys a resumed run may change (everything else must match the checkpoint's config)
RESUME_MAY_CHANGE = ("steps",)
#: volume seeds of the quality snapshots (fixed, so snapshots of one run compare like with like)
QUALITY_SEED = 7_000_000
#: training volumes the quality snapshots compare against (the first ones of the train split)
QUALITY_REAL_VOLUMES = 16
#: the structure metrics a quality snapshot logs (as ``quality/<name>``)
QUALITY_KEYS = ("z_profile_error", "z_profile_layout_error", "z_variation_ratio", "diversity_ratio",
                "nearest_train_hu", "train_nearest_other_hu", "copy_ratio")


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the run stopped before applying that update."""


def rank_seed(seed: int, rank: int, stream: int) -> int:
    """A 63-bit seed for (run seed, rank, stream) so ranks and RNG streams never coincide."""
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(1, np.uint64)[0] >> 1)


def dataset_meta(dataset: PreparedDataset, config: TrainConfig) -> dict[str, Any]:
    """What generation needs from the training data: cube size, median voxel spacing, HU window."""
    spacing = [statistics.median(r.spacing[i] for r in dataset.rows) for i in range(3)]
    return {"size": dataset.size, "spacing": spacing, "hu_window": list(config.hu_window), "data_dir": str(dataset.root)}


class Trainer:
    """State of one training run (one per process). :func:`train` drives it; benchmarks time its
    steps through :func:`single_process_trainer`."""

    def __init__(self, recipe: GanRecipe, config: TrainConfig, run_dir: Path, ctx: D.DistContext) -> None:
        self.recipe, self.config, self.run_dir, self.ctx = recipe, config, run_dir, ctx
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.nets: GanNetworks = recipe.build_networks(config).to(ctx.device)
        self.opt_g, self.opt_d = recipe.build_optimizers(self.nets, config)
        self.g_ema: torch.nn.Module | None = None
        if config.ema_beta > 0:
            self.g_ema = copy.deepcopy(self.nets.generator).eval().requires_grad_(False)
        self.noise = torch.Generator().manual_seed(rank_seed(config.seed, ctx.rank, 1))
        self.sampler: RealSampler | None = None
        self.last_real: dict[str, torch.Tensor] | None = None  # for previews of conditional models
        self.step = 0
        self.meta: dict[str, Any] = {}
        # Per-rank global RNGs (dropout etc. in recipes that use them).
        random.seed(rank_seed(config.seed, ctx.rank, 2))
        np.random.seed(rank_seed(config.seed, ctx.rank, 3) % 2**32)  # noqa: NPY002 (legacy global RNG)
        torch.manual_seed(rank_seed(config.seed, ctx.rank, 4))

    def state_dict(self) -> dict[str, Any]:
        assert self.sampler is not None
        per_rank = {"rng": capture_rng_state(), "sampler": self.sampler.state_dict(), "noise": self.noise.get_state()}
        ranks = D.gather_states(per_rank, self.ctx)
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.recipe.name,
            "step": self.step,
            "config": self.config.model_dump(mode="json"),
            "meta": {**self.meta, "world_size": self.ctx.world_size},
            "generator": self.nets.generator.state_dict(),
            **({"generator_ema": self.g_ema.state_dict()} if self.g_ema is not None else {}),
            "discriminator": self.nets.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "ranks": ranks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.sampler is not None
        self.nets.generator.load_state_dict(state["generator"])
        if self.g_ema is not None:
            self.g_ema.load_state_dict(state.get("generator_ema", state["generator"]))
        self.nets.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        ranks = state["ranks"]
        if len(ranks) == self.ctx.world_size:
            mine = ranks[self.ctx.rank]
            restore_rng_state(mine["rng"])
            self.sampler.load_state_dict(mine["sampler"])
            self.noise.set_state(mine["noise"])
        else:  # another world size: fresh, distinct streams derived from the step
            self.noise.manual_seed(rank_seed(self.config.seed * 1_000_003 + self.step, self.ctx.rank, 1))
            self.sampler.rng = np.random.default_rng([self.config.seed, self.ctx.rank, self.step])
            if self.ctx.is_main:
                print(f"note: checkpoint was written by {len(ranks)} processes, resuming with "
                      f"{self.ctx.world_size}: models and optimizers are exact, random streams are reseeded")

    def _phase(self, loss: torch.Tensor, opt: torch.optim.Optimizer, module: torch.nn.Module, what: str) -> None:
        if D.any_rank(not bool(torch.isfinite(loss).item()), self.ctx):
            last = latest_checkpoint(self.run_dir)
            raise TrainingDivergedError(
                f"{what} loss is not finite ({loss.item()}) at step {self.step + 1}; stopped without applying it. "
                f"Last good checkpoint: {last if last else 'none yet'}. Try a lower learning rate or a larger "
                f"penalty_weight, then resume from that checkpoint or start again."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        D.average_gradients(module.parameters(), self.ctx)
        opt.step()

    def train_step(self) -> dict[str, torch.Tensor]:
        """One G update preceded by ``d_steps`` D updates; returns detached scalars."""
        assert self.sampler is not None
        cfg, nets = self.config, self.nets
        scalars: dict[str, torch.Tensor] = {}
        for i in range(cfg.d_steps):
            real = {k: v.to(self.ctx.device, non_blocking=True) for k, v in self.sampler.sample(cfg.batch_size).items()}
            weight = cfg.penalty_weight_at(self.step * cfg.d_steps + i)
            loss_d, s_d = self.recipe.d_step(nets, real, cfg, self.noise, penalty_weight=weight)
            self._phase(loss_d, self.opt_d, nets.discriminator, "discriminator")
        scalars.update(s_d)
        scalars["loss_d"] = loss_d.detach()
        self.last_real = real
        nets.discriminator.requires_grad_(False)
        try:
            loss_g, s_g = self.recipe.g_step(nets, cfg.batch_size, cfg, self.noise, real=real)
            self._phase(loss_g, self.opt_g, nets.generator, "generator")
        finally:
            nets.discriminator.requires_grad_(True)
        scalars.update(s_g)
        scalars["loss_g"] = loss_g.detach()
        D.average_buffers(nets.generator, self.ctx)
        D.average_buffers(nets.discriminator, self.ctx)
        self.update_ema()
        self.step += 1
        return scalars

    @torch.no_grad()
    def update_ema(self) -> None:
        """g_ema <- beta * g_ema + (1 - beta) * G, buffers (BatchNorm statistics) copied.

        beta ramps up as min(ema_beta, (1 + step) / (10 + step)) so the average does not drag
        the untrained initial weights along for thousands of steps (as StyleGAN's ramp-up).
        """
        if self.g_ema is None:
            return
        beta = min(self.config.ema_beta, (1 + self.step) / (10 + self.step))
        for p_ema, p in zip(self.g_ema.parameters(), self.nets.generator.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - beta)
        for b_ema, b in zip(self.g_ema.buffers(), self.nets.generator.buffers(), strict=True):
            b_ema.copy_(b)

    def sampling_generator(self) -> torch.nn.Module:
        """The generator to sample from: the EMA copy when the run keeps one."""
        return self.g_ema if self.g_ema is not None else self.nets.generator

    def hu_calibration(self, dataset: PreparedDataset) -> HuCalibration:
        """The HU calibration of the sampling generator now (:mod:`ctsgan.data.hu_calibration`):
        ``hu_calibration_volumes`` volumes of the calibration seeds, one at a time, in eval mode,
        against the training volumes of ``dataset``."""
        g = self.sampling_generator()
        was_training = g.training
        g.eval()
        window, knots = self.config.hu_window, self.config.hu_knots
        try:
            with torch.no_grad():
                fake = [unit_to_hu(self.recipe.sample_volume(g, self.config, s, self.ctx.device), *window, knots)
                        for s in calibration_seeds(self.config.hu_calibration_volumes)]
        finally:
            g.train(was_training)
        return fit_hu_calibration(calibration_reals(dataset), fake, window, self.step)

    def quality(self, real: list[VolumeStructure]) -> dict[str, float]:
        """Structure metrics of ``quality_volumes`` volumes from the sampling generator (fixed seeds)
        against the summaries ``real`` of training volumes, as ``quality/<metric>`` scalars, with
        their nearest-training-volume distance beside the training volumes' own
        (:func:`~ctsgan.metrics.structure.copy_distances`: ``quality/copy_ratio`` falling = memorising).

        Sampling draws from its own seeded generators and runs in eval mode (BatchNorm statistics
        untouched), so a run with snapshots trains exactly as one without.
        """
        g = self.sampling_generator()
        was_training = g.training
        g.eval()
        seeds = [QUALITY_SEED + i for i in range(self.config.quality_volumes)]
        try:
            with torch.no_grad():
                vols = self.recipe.sample_volumes(g, self.config, seeds, self.ctx.device)
        finally:
            g.train(was_training)
        fake = [volume_structure(unit_to_hu(v.float().cpu().numpy(), *self.config.hu_window, self.config.hu_knots)) for v in vols]
        metrics = {**structure_metrics_from_summaries(real, fake), **copy_distances(real, fake)}
        return {f"quality/{k}": float(metrics[k]) for k in QUALITY_KEYS if metrics.get(k) is not None}

    def save(self) -> Path | None:
        state = self.state_dict()  # collective (gathers RNG states): every rank calls it
        path = None
        if self.ctx.is_main:
            path = save_checkpoint(self.run_dir, self.step, state, self.config.keep_last)
        D.barrier(self.ctx)
        return path

    def preview(self) -> None:
        if not self.ctx.is_main:
            return
        g = self.sampling_generator()
        was_training = g.training
        g.eval()
        spacing = tuple(self.meta.get("spacing", (1.0, 1.0, 1.0)))
        try:
            with torch.no_grad():
                self.recipe.save_preview(g, self.config, self.ctx.device, self.run_dir / "previews" / f"step-{self.step:08d}.png",
                                         spacing, self.last_real)  # type: ignore[arg-type]
        finally:
            g.train(was_training)


def single_process_trainer(recipe: GanRecipe, config: TrainConfig, data_dir: Path, run_dir: Path,
                           device: torch.device) -> Trainer:
    """A one-process :class:`Trainer` (no process group) on ``data_dir``'s training split, its
    networks in train mode: for benchmarks that time the loop's own :meth:`Trainer.train_step`."""
    ctx = D.DistContext(0, 1, 0, device, owns_group=False)
    trainer = Trainer(recipe, config, run_dir, ctx)
    trainer.sampler = recipe.make_sampler(config, PreparedDataset(data_dir, split=recipe.train_split(config)), (config.seed, 0))
    trainer.nets.train()
    return trainer


def train(
    model: str,
    config: TrainConfig | str | Path | None,
    data_dir: str | Path,
    run_dir: str | Path,
    steps: int | None = None,
    resume: bool = False,
    *,
    progress: bool = True,
    on_finish: Callable[[GanNetworks, D.DistContext], None] | None = None,
    time_limit_s: float | None = None,
) -> Path:
    """Train ``model`` on the train split of a prepared dataset; returns the last checkpoint.

    Args:
        model: a registered recipe name (``ctsgan``, ``gan3d``).
        config: a config object, a preset name (``tiny``, ``cpu64``, ``paper224``) or YAML path.
            With ``resume`` it may be None: the run dir's config is used.
        data_dir: prepared dataset dir (``manifest.csv``; rows with split ``train`` are used).
        run_dir: output dir (config.yaml, checkpoints/, metrics.jsonl, tensorboard/, previews/).
        steps: total number of steps to reach (overrides the config's ``steps``).
        resume: continue from the run dir's latest checkpoint (models, optimizers, step, RNGs).
        progress: show a tqdm bar (main rank only).
        time_limit_s: stop early once this many seconds of training have passed (a checkpoint
            and a preview are written at the stop; ``--resume`` continues towards ``steps``).
        on_finish: called on every rank with the final networks and the rank's context (e.g. to
            evaluate or inspect them before the process group closes).

    Raises:
        TrainingDivergedError: a loss became NaN / inf (last good checkpoint kept).
        FileExistsError: ``run_dir`` already has checkpoints and ``resume`` is False.
        RunDirBusyError: another process is training in ``run_dir`` (:mod:`ctsgan.training.run_lock`).
        ValueError: with ``resume``, a ``config`` that differs from the run's in keys other than
            ``steps`` (the differing keys are listed).
    """
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir, enabled=D.launched_world()[0] == 0):
        return _train(model, config, data_dir, run_dir, steps, resume, progress=progress, on_finish=on_finish,
                      time_limit_s=time_limit_s)


def config_changes(old: dict[str, Any], new: dict[str, Any], allowed: tuple[str, ...] = RESUME_MAY_CHANGE) -> list[str]:
    """``key: old -> new`` for every top-level key whose value differs, except ``allowed`` ones."""
    keys = sorted((set(old) | set(new)) - set(allowed))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _train(
    model: str,
    config: TrainConfig | str | Path | None,
    data_dir: str | Path,
    run_dir: Path,
    steps: int | None,
    resume: bool,
    *,
    progress: bool,
    on_finish: Callable[[GanNetworks, D.DistContext], None] | None,
    time_limit_s: float | None,
) -> Path:
    recipe = get_recipe(model)
    state: dict[str, Any] | None = None
    if resume:
        last = latest_checkpoint(run_dir)
        if last is None:
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no checkpoints in {run_dir / 'checkpoints'})")
        state = load_checkpoint(last)
        if state["model"] != recipe.name:
            raise ValueError(f"{last}: checkpoint is of model {state['model']!r}, not {recipe.name!r}")
        cfg = recipe.config_cls.from_dict(state["config"], source=f"{last} (config)")
        if config is not None:  # a config given with --resume must be the run's (only steps may change)
            given = config.model_copy(deep=True) if isinstance(config, TrainConfig) else recipe.load_config(config)
            changed = config_changes(cfg.model_dump(), given.model_dump())
            if changed:
                raise ValueError(
                    f"{run_dir}: --config differs from the run's config in {len(changed)} key(s): {'; '.join(changed)}; "
                    f"resume keeps the run's config (only --steps may change): drop --config or start a new --out"
                )
    else:
        if latest_checkpoint(run_dir) is not None:
            raise FileExistsError(f"{run_dir}: already holds checkpoints; pass --resume or choose a new --out")
        if config is None:
            raise ValueError("config is required for a new run (a preset name or a YAML path)")
        cfg = config.model_copy(deep=True) if isinstance(config, TrainConfig) else recipe.load_config(config)
        if cfg.model != recipe.name:
            raise ValueError(f"config is for model {cfg.model!r}, not {recipe.name!r}")
    if steps is not None:
        cfg.steps = steps

    if cfg.quality_every and not recipe.generates_volumes:
        raise ValueError(f"model {recipe.name!r} does not generate volumes: quality_every must be 0")
    if cfg.hu_calibration and not recipe.generates_volumes:
        raise ValueError(f"model {recipe.name!r} does not generate volumes: hu_calibration must be false")
    ctx = D.init_distributed(cfg.device)
    logger: RunLogger | None = None
    try:
        dataset = PreparedDataset(data_dir, split=recipe.train_split(cfg))
        recipe.check_dataset(cfg, dataset)
        trainer = Trainer(recipe, cfg, run_dir, ctx)
        trainer.sampler = recipe.make_sampler(cfg, dataset, (cfg.seed, ctx.rank))
        trainer.meta = dataset_meta(dataset, cfg)
        if state is not None:
            trainer.load_state_dict(state)
            trainer.meta = {**state["meta"], **{k: v for k, v in trainer.meta.items() if k not in state["meta"]}}
        else:
            D.broadcast_module(trainer.nets.generator, ctx)
            D.broadcast_module(trainer.nets.discriminator, ctx)
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
        logger = RunLogger(run_dir, ctx.is_main, cfg.tensorboard, resume_step=trainer.step if state else None)
        trainer.nets.train()
        quality_real: list[VolumeStructure] = []
        if cfg.quality_every and ctx.is_main:
            quality_real = [volume_structure(dataset.load(i)) for i in range(min(QUALITY_REAL_VOLUMES, len(dataset)))]
        bar = None
        if progress and ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=trainer.step, desc=f"train {recipe.name}", unit="step", dynamic_ncols=True)
        t0 = time.perf_counter()
        start_step = trainer.step
        while trainer.step < cfg.steps:
            scalars = trainer.train_step()
            step = trainer.step
            if step % cfg.log_every == 0 or step == cfg.steps:
                means = D.mean_scalars(scalars, ctx)
                logger.log(step, means, time_s=round(time.perf_counter() - t0, 3))
                if bar is not None:
                    bar.set_postfix(d=f"{means['loss_d']:.3f}", g=f"{means['loss_g']:.3f}")
            if bar is not None:
                if time_limit_s is not None:  # the bar ends where the time budget will, not at cfg.steps
                    done = step - start_step
                    rate = (time.perf_counter() - t0) / max(1, done)
                    bar.total = min(cfg.steps, step + int(max(0.0, time_limit_s - (time.perf_counter() - t0)) / rate))
                bar.update(1)
            out_of_time = time_limit_s is not None and D.any_rank(time.perf_counter() - t0 > time_limit_s, ctx)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
                trainer.save()
            if (cfg.preview_every and step % cfg.preview_every == 0) or step == cfg.steps or out_of_time:
                trainer.preview()
            if quality_real and (step % cfg.quality_every == 0 or step == cfg.steps or out_of_time):
                logger.log(step, trainer.quality(quality_real))
            if out_of_time:
                break
        if bar is not None:
            bar.close()
        final = checkpoint_path(run_dir, trainer.step)
        if cfg.hu_calibration and ctx.is_main and not calibration_path(final).is_file():
            save_calibration(trainer.hu_calibration(PreparedDataset(data_dir, split=recipe.train_split(cfg))), final)
        D.barrier(ctx)  # ranks leave together (the calibration ran on the main rank only)
        if on_finish is not None:
            on_finish(trainer.nets, ctx)
        return final
    finally:
        if logger is not None:
            logger.close()
        D.shutdown(ctx)
