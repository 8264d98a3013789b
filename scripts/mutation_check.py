#!/usr/bin/env python3
"""Mutation check: break each core CT-SGAN mechanism on purpose; the tests must notice.

For every named break, the source tree is copied to a temporary folder, one exact piece of
code is replaced (the break), and the guarding tests are run against the copy. A break that
leaves them passing is a hole in the test suite: the script then exits 1. A break whose target
text is no longer in the source also fails the check (the list below must follow the code).

    python scripts/mutation_check.py            # all breaks
    python scripts/mutation_check.py --list     # names only
    python scripts/mutation_check.py rv-zeroed slab-dropped

CI runs it from ``scripts/test.sh``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETS = "src/ctsgan/networks/ctsgan.py"
RECIPE = "src/ctsgan/training/recipes/ctsgan.py"
MECHANISMS = "tests/test_ctsgan_mechanisms.py"
LEARNING = "tests/test_ctsgan_learning.py"
GUARD = "tests/test_generation_guard.py"
MEMO = "tests/test_memorization_rejection.py"


@dataclass(frozen=True)
class Break:
    """Replace ``old`` (must occur exactly once in ``path``) by ``new``; ``tests`` must then fail."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = (MECHANISMS,)


BREAKS: tuple[Break, ...] = (
    Break("rv-zeroed", "R_v's output multiplied by 0", NETS,
          "return self.proj(out)  # (B, L, Z)", "return self.proj(out) * 0  # (B, L, Z)"),
    Break("rv-ignores-noise", "R_v fed zeros instead of its noise eps", NETS,
          "out, _ = self.lstm(eps, (h0.contiguous(), c0))", "out, _ = self.lstm(torch.zeros_like(eps), (h0.contiguous(), c0))"),
    Break("patient-ignored", "the patient code replaced by zeros", NETS,
          "parts = [patient[:, None, :].expand(-1, length, -1), z]",
          "parts = [torch.zeros_like(patient)[:, None, :].expand(-1, length, -1), z]"),
    Break("position-features-ignored", "G's position features replaced by zeros", NETS,
          "parts.append(pos[None].expand(b, -1, -1))", "parts.append(torch.zeros_like(pos)[None].expand(b, -1, -1))"),
    Break("d-slice-position-ignored", "D_slice always given position 0", NETS,
          "proj = (self.embed(position) * h).sum(1)  # (B,)", "proj = (self.embed(torch.zeros_like(position)) * h).sum(1)  # (B,)"),
    Break("d-slab-position-ignored", "D_slab always given slab position 0", NETS,
          "out = (self.embed(position) * h).sum(1)  # (B,)", "out = (self.embed(torch.zeros_like(position)) * h).sum(1)  # (B,)"),
    Break("slab-dropped-d", "the D_slab term removed from D's loss", RECIPE,
          "total = cfg.slice_weight * loss_slice + cfg.slab_weight * loss_slab",
          "total = cfg.slice_weight * loss_slice"),
    Break("slab-dropped-g", "the D_slab term removed from G's loss", RECIPE,
          "total = cfg.slice_weight * l_slice + cfg.slab_weight * l_slab", "total = cfg.slice_weight * l_slice"),
    Break("slab-not-consecutive-fake", "generated slab taken from every other position", RECIPE,
          "slab_slice = (k0.to(device)[:, None] + 1 - r + torch.arange(t + 2 * r, device=device)[None]).clamp(0, n_pos + 1)",
          "slab_slice = (k0.to(device)[:, None] + 1 - r + 2 * torch.arange(t + 2 * r, device=device)[None]).clamp(0, n_pos + 1)"),
    Break("slab-not-consecutive-real", "real slab slices taken in shuffled order", RECIPE,
          "slabs.append(vol[k0 + 1 : k0 + 1 + self.depth])",
          "slabs.append(vol[k0 + 1 : k0 + 1 + self.depth][self.rng.permutation(self.depth)])"),
    Break("d-slice-planes-ignored", "D_slice's first-layer position input always position 0", NETS,
          "feats = self.pos_table[position].to(x.dtype)  # (B, F)",
          "feats = self.pos_table[torch.zeros_like(position)].to(x.dtype)  # (B, F)"),
    Break("d-slab-planes-ignored", "D_slab's first-layer position input always slab position 0", NETS,
          "idx = position[:, None] + torch.arange(self.depth, device=position.device)[None]  # (B, T)",
          "idx = 0 * position[:, None] + torch.arange(self.depth, device=position.device)[None]  # (B, T)"),
    Break("lazy-penalty-never", "the lazy gradient-penalty schedule never applies the penalty", "src/ctsgan/training/recipe.py",
          "return self.penalty_weight * self.penalty_every if d_update % self.penalty_every == 0 else 0.0",
          "return 0.0", ("tests/test_training.py::test_lazy_penalty_schedule_reaches_the_d_step",)),
    Break("reused-fakes-detached", "the D phase's fakes reused by the G phase without their graph", RECIPE,
          "real.update({REUSED_PREFIX + k: v for k, v in fake.items()})",
          "real.update({REUSED_PREFIX + k: v.detach() for k, v in fake.items()})"),
    Break("noise-map-fixed", "every 3-slice given maps 0-2 of its noise volume, whatever its position", NETS,
          "k = position[:, None] + torch.arange(3, device=position.device)[None]  # (N, 3)",
          "k = 0 * position[:, None] + torch.arange(3, device=position.device)[None]  # (N, 3)"),
    Break("noise-ignored", "the noise injection adds nothing", "src/ctsgan/networks/common.py",
          "        return x + F.conv2d(noise.to(x.dtype), mix.to(x.dtype)[:, :, None, None])\n",
          "        return x\n"),
    Break("noise-training-misplaced", "training slabs' 3-slices get the noise maps of the wrong positions", RECIPE,
          "maps = three_slice_noise(field, vol, torch.cat([slab_idx.reshape(-1), positions]))",
          "maps = three_slice_noise(field, vol, torch.cat([slab_idx.flip(1).reshape(-1), positions]))"),
    Break("head-context-dropped", "the training slab goes through the 3D head without its context slices", RECIPE,
          "r = 0 if head is None else head.context", "r = 0", (MECHANISMS,)),
    Break("head-skipped-at-generation", "render_volumes leaves the 3D head out", RECIPE,
          "        if head is not None:\n            out = head.refine(", "        if False:\n            out = head.refine(",
          (MECHANISMS,)),
    Break("head-lost-at-inference", "the folded inference generator drops the 3D head", RECIPE,
          "fast.head = g.head", "fast.head = None", (MECHANISMS,)),
    Break("overlap-term-dropped", "the overlap disagreement logged but not added to G's loss", RECIPE,
          "total = total + cfg.overlap_weight * overlap", "total = total + 0 * overlap"),
    Break("overlap-pairs-misaligned", "the overlap term compares channel 2 of 3-slice k with channel 2 of k + 1", RECIPE,
          "pairs = [(three[:, :-1, 2], three[:, 1:, 1]), (three[:, 1:, 0], three[:, :-1, 1])]",
          "pairs = [(three[:, :-1, 2], three[:, 1:, 2]), (three[:, 1:, 0], three[:, :-1, 1])]"),
    Break("noise-smoothing-skipped", "g_noise_smooth set but the noise volume left white", RECIPE,
          "    if field is not None and max(g.noise_smooth) > 0:\n", "    if False:\n"),
    Break("noise-smoothing-lost-at-inference", "the inference generator draws white noise despite g_noise_smooth", RECIPE,
          "fast.position_dim, fast.noise_smooth, fast.neighbour_codes = g.position_dim, g.noise_smooth, g.neighbour_codes",
          "fast.position_dim, fast.noise_smooth, fast.neighbour_codes = g.position_dim, (0.0, 0.0), g.neighbour_codes"),
    Break("neighbour-codes-shifted", "neighbour_codes gives G z_i where z_{i-1} belongs", NETS,
          "parts[1:] = [torch.cat([z[:, :1], z[:, :-1]], 1), z, torch.cat([z[:, 1:], z[:, -1:]], 1)]",
          "parts[1:] = [z, z, torch.cat([z[:, 1:], z[:, -1:]], 1)]"),
    Break("neighbour-codes-lost-at-inference", "the inference generator forgets neighbour_codes", RECIPE,
          "fast.position_dim, fast.noise_smooth, fast.neighbour_codes = g.position_dim, g.noise_smooth, g.neighbour_codes",
          "fast.position_dim, fast.noise_smooth, fast.neighbour_codes = g.position_dim, g.noise_smooth, False"),
    Break("mbstd-zeroed", "the minibatch-std feature always 0", NETS,
          "return std.repeat(g)[:, None]  # (B, 1)", "return torch.zeros_like(std.repeat(g)[:, None])  # (B, 1)"),
    Break("ema-frozen", "the EMA of G never updated", "src/ctsgan/training/loop.py",
          "p_ema.lerp_(p.detach(), 1.0 - beta)", "pass", ("tests/test_training.py::test_ema_follows_the_generator",)),
    Break("learning-no-rv-no-position", "G sees neither R_v's codes nor the position (only the patient code)", NETS,
          "return torch.cat(parts, dim=2)", "return torch.cat([parts[0]] + [torch.zeros_like(q) for q in parts[1:]], dim=2)",
          (LEARNING,)),
    Break("assemble-reversed", "assemble_volume puts the 3-slices in reverse order", NETS,
          "return torch.cat([three_slices[:1, 0], three_slices[:, 1], three_slices[-1:, 2]], dim=0)",
          "return torch.cat([three_slices[:1, 0], three_slices.flip(0)[:, 1], three_slices[-1:, 2]], dim=0)",
          ("tests/test_ctsgan_networks.py",)),
    Break("render-reversed", "render_volumes writes the 3-slices in reverse order", RECIPE,
          "out[v, k + 1 : k + 1 + m] = three[j : j + m, 1]",
          "out[v, n_slices - 1 - k - m : n_slices - 1 - k] = three[j : j + m, 1].flip(0)",
          (MECHANISMS,)),
    Break("augment-reals-only", "DiffAugment skipped for the G phase's fakes (the classic leak)", RECIPE,
          'slice_logits = d.d_slice(diff_augment(fake["slices"], cfg.augment, noise), fake["positions"])',
          'slice_logits = d.d_slice(fake["slices"], fake["positions"])',
          ("tests/test_diffaugment.py",)),
    Break("translation-per-slice", "each slice of a sample shifted on its own (slabs no longer rigid)",
          "src/ctsgan/training/diffaugment.py",
          "return x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1]), x.shape",
          "return x.reshape(-1, 1, x.shape[-2], x.shape[-1]), x.shape",
          ("tests/test_diffaugment.py",)),
    Break("quality-in-train-mode", "quality snapshots sample G in train mode (BatchNorm statistics move)",
          "src/ctsgan/training/loop.py",
          "        g.eval()\n        seeds = [QUALITY_SEED", "        seeds = [QUALITY_SEED",
          ("tests/test_training.py::test_quality_snapshots_are_logged_and_leave_training_unchanged",)),
    Break("g-refine-skipped", "g_refine builds the plain output layer (no full-resolution block)", NETS,
          "        if refine:\n", "        if False:\n",
          ("tests/test_ctsgan_networks.py::test_refine_adds_a_full_resolution_block_from_the_config",)),
    Break("d-spectral-dropped", "D_slice's spectral score computed but not added to its logit", NETS,
          "out = out + self.spectral(reduced_spectrum(x, self.spectrum_bins).to(out.dtype)).squeeze(1)",
          "out = out + 0 * self.spectral(reduced_spectrum(x, self.spectrum_bins).to(out.dtype)).squeeze(1)",
          ("tests/test_ctsgan_networks.py::test_spectral_slice_discriminator_starts_plain_and_sees_speckle",)),
    Break("d-slab-spectral-dropped", "D_slab's z-structure score computed but not added to its logit", NETS,
          "out = out + self.spectral(z_structure_spectrum(x, self.spectrum_bins).to(out.dtype)).squeeze(1)",
          "out = out + 0 * self.spectral(z_structure_spectrum(x, self.spectrum_bins).to(out.dtype)).squeeze(1)",
          ("tests/test_ctsgan_networks.py::test_spectral_slab_discriminator_starts_plain_and_sees_streaks",)),
    Break("z-spectrum-distance-ignored", "the z-structure spectrum takes neighbour differences at every distance", NETS,
          "diff = f[:, d:] - f[:, :-d]  # (B, T - d, S, S/2 + 1): spectrum of x[k + d] - x[k]",
          "diff = f[:, 1:] - f[:, :-1]  # (B, T - d, S, S/2 + 1): spectrum of x[k + d] - x[k]",
          ("tests/test_ctsgan_networks.py::test_z_structure_spectrum_by_hand",)),
    Break("hu-knots-ignored-in-real-batches", "real batches mapped to units linearly despite hu_knots",
          "src/ctsgan/training/recipe.py",
          "hu_to_unit(hu, *self.hu_window, self.hu_knots)", "hu_to_unit(hu, *self.hu_window)",
          ("tests/test_hu_knots.py::test_real_batches_use_the_knots",)),
    Break("hu-knots-ignored-when-writing", "generated volumes mapped back to HU linearly despite hu_knots",
          "src/ctsgan/generation/generate.py",
          "hu = unit_to_hu_array(unit, *self.config.hu_window, self.config.hu_knots)",
          "hu = unit_to_hu_array(unit, *self.config.hu_window)",
          ("tests/test_hu_knots.py::test_generated_volumes_are_written_through_the_knots",)),
    Break("hu-calibration-not-applied", "generation writes raw HU although the checkpoint has a calibration",
          "src/ctsgan/generation/generate.py",
          "return hu if raw or self.calibration is None else self.calibration.apply(hu)", "return hu",
          ("tests/test_hu_calibration.py::test_training_fits_it_and_generation_applies_it",)),
    Break("hu-calibration-on-all-voxels", "the calibration fitted on every voxel (air included), not the body's",
          "src/ctsgan/data/hu_calibration.py",
          "vals = np.clip(np.asarray(v)[body_mask(np.asarray(v))], *window)",
          "vals = np.clip(np.asarray(v).ravel(), *window)",
          ("tests/test_hu_calibration.py::test_fit_sees_body_voxels_only",)),
    Break("detection-origins-ignored", "the untouched-scan differences computed on every test scan",
          "src/ctsgan/experiments/nodule_detection/report.py",
          "out[r.seed] = [ok for ok, o in zip(r.test_correct, r.test_origins, strict=True) if o in origins]",
          "out[r.seed] = r.test_correct",
          ("tests/test_detection_power.py",)),
    Break("detection-origins-misaligned", "the stored test-scan origins taken from the training split",
          "src/ctsgan/experiments/nodule_detection/grid.py",
          'test_origins=[v.origin.value for v in real if v.split == "test"]',
          'test_origins=[v.origin.value for v in real if v.split == "train"]',
          ("tests/test_detection_power.py",)),
    Break("lecam-anchors-frozen", "the LeCam anchors never follow D's logits (stay at 0)", "src/ctsgan/losses/gan.py",
          "        lecam.update(real_logits.detach(), fake_logits.detach())\n", "",
          ("tests/test_gan_losses.py", "tests/test_training.py::test_lecam_anchors_live_in_the_discriminator_checkpoint")),
    Break("copy-check-counts-self", "the training scans' nearest-other distance lets a scan be its own neighbour",
          "src/ctsgan/metrics/structure.py",
          "for j, r in enumerate(ref) if not (exclude_self and j == i))", "for j, r in enumerate(ref))",
          ("tests/test_structure_metrics.py",)),
    Break("trajectory-latest-only", "the checkpoint trajectory measures the latest checkpoint on every row",
          "src/ctsgan/experiments/real_chest.py",
          'r = evaluate_holdout(ckpt, data, Path(out) / f"step-{step:08d}", holdout, n_generate, seed, raw=False,',
          'r = evaluate_holdout(found[-1][1], data, Path(out) / f"step-{step:08d}", holdout, n_generate, seed, raw=False,',
          ("tests/test_real_chest_holdout.py::test_holdout_ctsgan_tiny_run_reports_structure_and_memorization",)),
    Break("nearest-mix-unweighted", "the nearest-patient mix counts each training scan once, however many volumes are near it",
          "src/ctsgan/experiments/real_chest.py",
          "st = structure_metrics_from_summaries(real_s, [real_s[where[t]] for t in nearest])",
          "st = structure_metrics_from_summaries(real_s, [real_s[where[t]] for t in sorted(set(nearest))])",
          ("tests/test_real_chest_holdout.py::test_nearest_mix_scores_the_training_scans_in_the_sets_mix",)),
    Break("real-affine-ignored", "the sampler draws the real samples' in-plane transforms but returns them untransformed",
          "src/ctsgan/training/recipes/ctsgan.py",
          "        return affine_inplane(x, params, displacement=warp)\n",
          "        return x\n",
          ("tests/test_real_augment.py",)),
    Break("real-elastic-not-applied", "the sampler draws the real samples' elastic warps but applies only the affine part",
          "src/ctsgan/training/recipes/ctsgan.py",
          "        return affine_inplane(x, params, displacement=warp)\n",
          "        return affine_inplane(x, params, displacement=None)\n",
          ("tests/test_real_augment.py",)),
    Break("aligned-check-untransformed", "the aligned copy check compares with the training scans as they are",
          "src/ctsgan/metrics/structure.py",
          "            moved = affine_inplane(v.expand(len(part), -1, -1, -1), part, fill=CLIP_HU[0]).numpy()\n",
          "            moved = v.expand(len(part), -1, -1, -1).numpy()\n",
          ("tests/test_structure_metrics.py",)),
    Break("resize-taps-misplaced", "the fused resize layers sum the 3x3 taps into the wrong transposed-convolution tap",
          "src/ctsgan/networks/common.py",
          "_RESIZE_TAPS = ((2,), (1, 2), (0, 1), (0,))", "_RESIZE_TAPS = ((0,), (1, 2), (0, 1), (2,))",
          ("tests/test_ctsgan_networks.py",)),
    Break("memorization-copies-kept", "memorization rejection leaves near-copy slabs in G's adversarial loss", RECIPE,
          "keep = ratio.detach() >= 1", "keep = ratio.detach() >= 0", (MEMO,)),
    Break("memorization-slices-kept", "memorization rejection drops a near-copy's slab but keeps its slices in G's loss",
          RECIPE, "keep.repeat_interleave(n_per))", "torch.ones_like(keep.repeat_interleave(n_per)))", (MEMO,)),
    Break("memorization-reject-forced", "memorization_reject: false still drops near-copies from G's loss", RECIPE,
          "            if not cfg.memorization_reject:\n", "            if False:\n", (MEMO,)),
    Break("memorization-repel-dropped", "memorization_repel logged but not added to G's loss", RECIPE,
          "total = total + cfg.memorization_repel * repel", "total = total + 0 * repel", (MEMO,)),
    Break("memorization-threshold-farthest-pair", "the rejection threshold is the training scans' farthest pair",
          "src/ctsgan/training/memorization.py", "out = torch.minimum(out, windows)",
          "out = torch.where(torch.isinf(out), windows, torch.maximum(out, windows))", (MEMO,)),
    Break("memorization-reference-shifted", "the training slabs compared are one slice off the generated slab's", RECIPE,
          "self.memo_ref[:, k0 + 1 : k0 + 1 + self.depth]", "self.memo_ref[:, k0 : k0 + self.depth]", (MEMO,)),
    Break("z-profile-floor-equal-mix", "the z-profile sampling floor scores every set in the real volumes' equal mix",
          "src/ctsgan/metrics/structure.py", "np.tensordot(c / n, pool, axes=1)",
          "np.tensordot(np.full(len(pool), 1 / len(pool)), pool, axes=1)", ("tests/test_structure_metrics.py",)),
    Break("z-profile-bootstrap-not-resampled", "the z-profile bootstrap scores the generated set itself every draw",
          "src/ctsgan/metrics/structure.py", "errs = _resampled_errors(real, g, len(g), draws, seed)",
          "errs = np.full(draws, profile_error_from_curves(real, g.mean(axis=0))[0])", ("tests/test_structure_metrics.py",)),
    Break("guard-ignored", "generate --guard writes every volume whatever its distance to the training scans",
          "src/ctsgan/generation/generate.py", "        return verdict.kept\n", "        return True\n", (GUARD,)),
    Break("guard-same-patient-counted", "the automatic guard distance lets two scans of one patient set it",
          "src/ctsgan/generation/guard.py", "other = np.flatnonzero(pid[i + 1 :] != pid[i]) + i + 1",
          "other = np.arange(i + 1, len(cubes))", (GUARD,)),
    Break("guard-resume-redraws-rejected", "a resumed guarded run generates the volumes its log rejected again",
          "src/ctsgan/generation/generate.py",
          "todo = [i for i in cands if i not in done and decided.get(volume_name(seed, i)) is not False]",
          "todo = [i for i in cands if i not in done]", (GUARD,)),
    Break("evaluate-guard-count-blind", "evaluate never counts a generated volume as closer than the closest real pair",
          "src/ctsgan/metrics/structure.py", "int((near < other).sum())", "int((near < 0).sum())",
          ("tests/test_evaluate_structure.py",)),
    Break("guard-resume-any-threshold", "a resumed guarded run reuses decisions made with another threshold",
          "src/ctsgan/generation/generate.py", "    if logged and logged != {f\"{guard.threshold_hu:.1f}\"}:", "    if False:", (GUARD,)),
    Break("guard-overwrite-keeps-stale", "generate --guard --overwrite leaves the earlier run's volumes it does not pass",
          "src/ctsgan/generation/generate.py", "            remove_output(out_dir, volume_name(seed, i), fmt_e.value)\n", "            pass\n",
          (GUARD,)),
    Break("inpaint-l1-pooled", "the injector's region L1 pooled over the batch (a small nodule beside a large one counts ~0)",
          "src/ctsgan/nodules/losses.py",
          "        total = total + w * (per_voi * present).sum() / present.sum().clamp(min=1.0)",
          "        total = total + w * (diff * region).sum() / region.sum().clamp(min=1.0)",
          ("tests/test_inpaint.py",)),
)


def apply_break(root: Path, brk: Break) -> None:
    """Apply ``brk`` to the copy at ``root``; ValueError when its target text is not found exactly once."""
    path = root / brk.path
    text = path.read_text()
    count = text.count(brk.old)
    if count != 1:
        raise ValueError(f"{brk.name}: expected the target text once in {brk.path}, found it {count} times")
    path.write_text(text.replace(brk.old, brk.new))


def run_break(brk: Break, python: str) -> tuple[bool, str, float]:
    """(caught, detail, seconds): ``caught`` is True when the guarding tests fail on the broken copy."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mut-{brk.name}-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
        try:
            apply_break(root, brk)
        except ValueError as e:
            return False, str(e), time.perf_counter() - t0
        env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        for test in brk.tests:
            cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test]
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
            if proc.returncode == 1:  # tests ran and failed: the break was noticed
                failed = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED")]
                return True, (failed[0] if failed else f"{test} failed"), time.perf_counter() - t0
            if proc.returncode not in (0, 5):
                return False, f"{test}: pytest exit {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}", 0.0
        return False, "every guarding test passed", time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="breaks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the breaks and exit")
    args = parser.parse_args(argv)
    by_name = {b.name: b for b in BREAKS}
    if args.list:
        for b in BREAKS:
            print(f"{b.name:<28} {b.what}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown break(s) {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in args.names] if args.names else list(BREAKS)
    missed = []
    for brk in chosen:
        caught, detail, secs = run_break(brk, sys.executable)
        print(f"{'caught' if caught else 'MISSED':<7} {brk.name:<28} {secs:5.1f} s  {detail.splitlines()[0] if detail else ''}",
              flush=True)
        if not caught:
            missed.append((brk, detail))
    for brk, detail in missed:
        print(f"\n{brk.name} ({brk.what}) was not caught:\n{detail}", file=sys.stderr)
    print(f"mutation check: {len(chosen) - len(missed)} of {len(chosen)} breaks caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
