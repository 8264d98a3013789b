"""Model-agnostic GAN training: recipes registry, loop, checkpoints, DDP, logging."""

from ctsgan.training.loop import TrainingDivergedError, train

__all__ = ["TrainingDivergedError", "train"]
