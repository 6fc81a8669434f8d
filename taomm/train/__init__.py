"""Training: the loop (single process or torchrun DDP), checkpoints, and the tasks."""

from taomm.train.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["TrainConfig", "TrainResult", "Trainer"]
