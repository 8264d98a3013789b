"""Named choices, the config and the callable types of the nodule-detection experiment."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import numpy as np
from pydantic import Field

from ctsgan.config import Config, parse_choice
from ctsgan.data.dataset import NoduleSpec
from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT

InjectFn = Callable[
    [np.ndarray, tuple[float, float, float], np.random.Generator, float], tuple[np.ndarray, list[NoduleSpec]]
]
EraseFn = Callable[[np.ndarray, tuple[float, float, float], list[NoduleSpec]], np.ndarray]
# view(hu (z, y, x), spacing_zyx, candidate centre (z, y, x) or None for a clean scan, rng) -> stored array
ViewFn = Callable[
    [np.ndarray, tuple[float, float, float], tuple[float, float, float] | None, np.random.Generator],
    np.ndarray,
]


class Regime(StrEnum):
    """Training regimes of the experiment (paper Figure 3(b))."""

    REAL = "real"
    SYNTHETIC = "synthetic"
    PRETRAIN_FINETUNE = "pretrain-finetune"
    # the positive control: real-only on every real training scan, against ``real`` on the
    # ``real_train_limit`` of them (its answer is known: more real data must help)
    REAL_ALL = "real-all"


def parse_regime(value: str) -> Regime:
    """``"real"`` -> Regime.REAL; a bad name raises ValueError listing the valid ones."""
    return parse_choice(Regime, value, "regime")


class Origin(StrEnum):
    """How a labelled volume came to be."""

    KEPT = "kept"  # real nodule scan, nodules kept (label 1)
    ERASED = "erased"  # nodules erased (label 0)
    INJECTED = "injected"  # nodules injected (label 1)
    CLEAN = "clean"  # untouched clean scan (label 0)


class InputView(StrEnum):
    """What the classifier sees of a labelled scan."""

    VOLUME = "volume"  # the whole cube, resampled to input_size^3 (the paper's task)
    VOI = "voi"  # an input_size^3 cube around a candidate location, at the scan's resolution


def parse_view(value: str) -> InputView:
    """``"voi"`` -> InputView.VOI; a bad name raises ValueError listing the valid ones."""
    return parse_choice(InputView, value, "view")


class DetectionConfig(Config):
    """Training settings of the nodule-detection experiment (saved as ``config.yaml``)."""

    view: InputView = Field(
        default=InputView.VOLUME, description="volume (whole cube) or voi (candidate cube)"
    )
    input_size: int = Field(
        default=32, ge=16, description="classifier input edge (voxels): resampled cube or VOI"
    )
    voi_jitter: int = Field(
        default=4, ge=0, description="voi view: random offset (voxels, per axis) of the candidate"
    )
    width: float = Field(default=0.25, gt=0, description="SqueezeNet channel multiplier (1.0 = published)")
    dropout: float = Field(default=0.5, ge=0, lt=1)
    steps: int = Field(
        default=300, ge=1, description="optimizer steps on real data (real-only and fine-tuning)"
    )
    pretrain_steps: int = Field(default=300, ge=1, description="optimizer steps on synthetic data")
    batch_size: int = Field(default=8, ge=1)
    eval_every: int = Field(default=50, ge=1, description="validate (model selection) every this many steps")
    lr: float = Field(default=1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    augment: bool = Field(default=True, description="random flips along z, y, x during training")
    synthetic_val_fraction: float = Field(default=0.1, gt=0, lt=1)
    real_train_limit: int | None = Field(
        default=None, ge=2,
        description="real training scans of the real and pretrain-finetune regimes (balanced subset; None: all); "
        "with it the grid also runs real-all, the positive control",
    )
    min_nodule_voxels: float = Field(
        default=3.0, ge=0, description="refuse nodule sizes whose diameter spans fewer classifier-input voxels"
    )
    hu_window: tuple[float, float] = (HU_MIN_DEFAULT, HU_MAX_DEFAULT)


class NoduleModel(StrEnum):
    """Which injector / eraser the experiment uses."""

    AUTO = "auto"  # gan when both checkpoints are given, else classical
    GAN = "gan"  # the 3D conditional inpainting GANs (ctsgan.nodules), from checkpoints
    CLASSICAL = "classical"  # ctsgan.nodules.classical (no training needed)

    @classmethod
    def parse(cls, value: str) -> NoduleModel:
        return parse_choice(cls, value, "nodule model")


