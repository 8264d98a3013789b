"""HU calibration of a trained generator: one monotone lookup from its HU to the training set's.

This module is the fit and the file (numpy only); training fits it after the last step
(:meth:`ctsgan.training.loop.Trainer.hu_calibration`) and :mod:`ctsgan.generation.calibration`
fits it for any checkpoint (``ctsgan calibrate``).

A GAN trained for minutes on a CPU draws the chest's layout before it draws each tissue's narrow
HU peak: at cpu64 the generated body voxels form one broad hump from fat to muscle (fat 0.13 of
body voxels against 0.22 real, docs/fidelity.md). This module fits, once per checkpoint, the
monotone map that sends the generated body-HU distribution onto the training set's (quantile
matching: histogram standardisation as in Nyul & Udupa 1999 / TorchIO's
``HistogramStandardization``, fitted on the generator's output rather than on each input), and
:func:`ctsgan.generation.generate.load_generator` applies it to every volume it writes.

- **What it changes**: intensities only, voxel by voxel, in the same order (a voxel darker than
  another stays darker; shapes, layout, z-structure and seed-to-seed differences are the
  generator's). It cannot add a structure the generator did not draw.
- **Fit**: body voxels (:func:`ctsgan.data.realism.body_mask`) of ``volumes`` generated volumes
  (:func:`calibration_seeds`, never a user's generation seeds) against those of up to
  :data:`MAX_REAL_VOLUMES` training volumes, both clipped to the HU window; landmarks at the
  quantiles :data:`QUANTILES`; the window's ends map onto themselves (air stays air).
- **Where it lives**: beside its checkpoint, ``step-XXXXXXXX.calibration.json`` (generated HU
  landmarks -> real HU landmarks, the step, how it was fitted). ``ctsgan calibrate`` fits it for
  any checkpoint; training fits it for the last one when the config has ``hu_calibration: true``;
  ``ctsgan generate --raw-hu`` writes the generator's own HU instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctsgan.data.dataset import PreparedDataset
from ctsgan.data.realism import body_mask
from ctsgan.io.atomic import atomic_write_text

CALIBRATION_SEED = 7_340_033  # the fitting volumes' seeds: CALIBRATION_SEED + i (calibration_seeds)
QUANTILES: tuple[float, ...] = tuple(np.round(np.linspace(0.5, 99.5, 199), 3).tolist())
MAX_REAL_VOLUMES = 32
MAX_VALUES_PER_VOLUME = 1_000_000
FORMAT = "ctsgan-hu-calibration/1"


@dataclass(frozen=True)
class HuCalibration:
    """A monotone piecewise-linear HU -> HU map through (``source[i]``, ``target[i]``).

    ``source`` (generated HU) and ``target`` (real HU) both increase strictly; the first and last
    pairs are the HU window's ends mapped onto themselves.
    """

    source: tuple[float, ...]
    target: tuple[float, ...]
    step: int
    volumes: int
    real_volumes: int

    def lut(self) -> np.ndarray:
        """int16 lookup table over the window's integer HU: ``lut[h - lo]`` = calibrated ``h``."""
        lo, hi = int(round(self.source[0])), int(round(self.source[-1]))
        return np.rint(np.interp(np.arange(lo, hi + 1), self.source, self.target)).astype(np.int16)

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """Calibrated int16 copy of an integer HU array (values outside the window are clipped first)."""
        lo, hi = int(round(self.source[0])), int(round(self.source[-1]))
        idx = np.clip(np.asarray(hu), lo, hi).astype(np.int64) - lo
        return self.lut()[idx]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str) -> HuCalibration:
        """Parse :meth:`to_json`'s output; ValueError naming ``source`` when it is not one."""
        try:
            d: dict[str, Any] = json.loads(text)
            if d.pop("format") != FORMAT:
                raise ValueError(f"format {FORMAT!r} expected")
            cal = cls(tuple(map(float, d["source"])), tuple(map(float, d["target"])), int(d["step"]),
                      int(d["volumes"]), int(d["real_volumes"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source}: not a ctsgan HU calibration ({e})") from None
        s, t = np.asarray(cal.source), np.asarray(cal.target)
        if len(s) < 2 or len(s) != len(t) or (np.diff(s) <= 0).any() or (np.diff(t) < 0).any():
            raise ValueError(f"{source}: HU calibration landmarks must be increasing pairs")
        return cal


def body_values(volumes: Iterable[np.ndarray], window: tuple[float, float]) -> np.ndarray:
    """Body-voxel HU of ``volumes`` ((z, y, x) each), clipped to ``window``, as one float32 array."""
    parts = []
    for v in volumes:
        vals = np.clip(np.asarray(v)[body_mask(np.asarray(v))], *window).astype(np.float32)
        parts.append(vals[:: max(1, vals.size // MAX_VALUES_PER_VOLUME)])  # quantiles need no more
    if not parts or sum(p.size for p in parts) == 0:
        raise ValueError("no body voxels to calibrate on")
    return np.concatenate(parts)


def fit_landmarks(
    real: np.ndarray, generated: np.ndarray, window: tuple[float, float], quantiles: Iterable[float] = QUANTILES
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Quantile landmarks (generated HU, real HU) between the window's ends.

    Pairs whose generated or real HU does not increase over the previous pair are dropped, so
    the map is a function and monotone; a tie in the generated HU (many voxels at one value)
    keeps its first pair.

    Returns:
        (source, target): strictly increasing source, non-decreasing target, starting at
        (lo, lo) and ending at (hi, hi).
    """
    lo, hi = float(window[0]), float(window[1])
    q = np.asarray(list(quantiles), dtype=np.float64)
    gq = np.percentile(generated, q)
    rq = np.percentile(real, q)
    source, target = [lo], [lo]
    for g, r in zip(gq.tolist(), rq.tolist(), strict=True):
        if lo < g < hi and g > source[-1] and r >= target[-1] and r < hi:
            source.append(g)
            target.append(r)
    source.append(hi)
    target.append(hi)
    return tuple(source), tuple(target)


def fit_hu_calibration(
    real_volumes: Iterable[np.ndarray], generated_volumes: list[np.ndarray], window: tuple[float, float], step: int,
) -> HuCalibration:
    """The calibration that maps the generated body-HU distribution onto the real one."""
    real_list = list(real_volumes)
    src, tgt = fit_landmarks(body_values(real_list, window), body_values(generated_volumes, window), window)
    return HuCalibration(src, tgt, int(step), len(generated_volumes), len(real_list))


def calibration_path(checkpoint: str | Path) -> Path:
    """``.../step-XXXXXXXX.calibration.json`` beside ``.../step-XXXXXXXX.pt``."""
    return Path(checkpoint).with_suffix(".calibration.json")


def save_calibration(calibration: HuCalibration, checkpoint: str | Path) -> Path:
    """Write ``calibration`` atomically beside ``checkpoint``."""
    return atomic_write_text(calibration_path(checkpoint), calibration.to_json())


def load_calibration(checkpoint: str | Path, step: int) -> HuCalibration | None:
    """The calibration beside ``checkpoint``, or None when it has none.

    Raises:
        ValueError: the file is unreadable, or was fitted for another step (names the file).
    """
    path = calibration_path(checkpoint)
    if not path.is_file():
        return None
    cal = HuCalibration.from_json(path.read_text(), str(path))
    if cal.step != step:
        raise ValueError(f"{path}: fitted for step {cal.step}, but the checkpoint is step {step}; "
                         "run `ctsgan calibrate` again or delete the file")
    return cal


def calibration_seeds(volumes: int) -> list[int]:
    """The generation seeds of the fitting volumes (``recipe.sample_volume(seed)``): reserved,
    never a ``generate`` run's (those are 63-bit hashes from ``volume_seed``)."""
    return [CALIBRATION_SEED + i for i in range(volumes)]


def calibration_reals(dataset: PreparedDataset) -> list[np.ndarray]:
    """Up to :data:`MAX_REAL_VOLUMES` volumes of a prepared dataset (its train split), evenly
    spaced over it: the target distribution."""
    if len(dataset) == 0:
        raise ValueError(f"{dataset.root}: no training volumes to calibrate against")
    idx = np.unique(np.linspace(0, len(dataset) - 1, min(len(dataset), MAX_REAL_VOLUMES)).round().astype(int))
    return [np.asarray(dataset.load(int(i))) for i in idx]
