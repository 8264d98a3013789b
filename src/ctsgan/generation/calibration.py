"""``ctsgan calibrate``: fit a finished checkpoint's HU calibration (the fit and its file:
:mod:`ctsgan.data.hu_calibration`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ctsgan.data.hu_calibration import (
    calibration_reals,
    calibration_seeds,
    fit_hu_calibration,
    save_calibration,
)


def calibrate_checkpoint(
    checkpoint: str | Path, data_dir: str | Path | None = None, volumes: int = 16, device: str | torch.device = "auto",
) -> Path:
    """Fit and save the HU calibration of a checkpoint (a file, or a run dir: its latest).

    Args:
        checkpoint: checkpoint file or run dir.
        data_dir: the prepared dataset it was trained on (default: the one recorded in the
            checkpoint); its train split is the target (:func:`calibration_reals`).
        volumes: generated volumes to fit on (:func:`calibration_seeds`).
        device: where to generate them.

    Returns:
        the calibration file's path.
    """
    from ctsgan.data.dataset import PreparedDataset
    from ctsgan.generation.generate import load_generator

    if volumes < 1:
        raise ValueError(f"volumes must be >= 1, got {volumes}")
    g = load_generator(checkpoint, device, calibrated=False)
    data = Path(data_dir) if data_dir is not None else g.meta.get("data_dir")
    if data is None:
        raise ValueError(f"{g.checkpoint}: records no training data folder; pass --data")
    dataset = PreparedDataset(data, split=g.recipe.train_split(g.config))
    real = calibration_reals(dataset)
    generated = [g.sample(seed) for seed in calibration_seeds(volumes)]
    return save_calibration(fit_hu_calibration(real, generated, g.config.hu_window, g.step), g.checkpoint)
