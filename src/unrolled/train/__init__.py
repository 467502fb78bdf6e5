"""Training: the loop, checkpoints, optimizers and schedules, callbacks."""

from .config import TrainConfig
from .loop import Trainer, TrainingDiverged

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged"]
