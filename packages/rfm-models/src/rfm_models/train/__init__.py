"""rfm's trainer: ``train(cfg, model, loader, selector=None) -> TrainResult`` (see docs/training.md)."""

from rfm_models.train.compute import ComputeCounters
from rfm_models.train.config import (
    BudgetConfig,
    CheckpointConfig,
    OptimizerConfig,
    Precision,
    ScheduleConfig,
    TrainConfig,
)
from rfm_models.train.trainer import EmptyDatasetError, TrainResult, iter_metrics, train

__all__ = [
    "BudgetConfig",
    "CheckpointConfig",
    "ComputeCounters",
    "EmptyDatasetError",
    "OptimizerConfig",
    "Precision",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "iter_metrics",
    "train",
]
