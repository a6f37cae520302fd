"""Evaluation tasks: importing this package registers every built-in task (see :mod:`rfm_eval.tasks.base`)."""

import importlib.util

from rfm_eval.tasks import finetune, probes, retrieval, zeroshot
from rfm_eval.tasks.base import (
    NotApplicableError,
    Predictions,
    Task,
    TaskContext,
    TaskOutput,
    TaskResult,
    TaskStatus,
    register_task,
    run_task,
    tasks,
)

# Segmentation needs MONAI (an extra): registered only where it imports.
if importlib.util.find_spec("rfm_eval.tasks.segmentation") is not None and importlib.util.find_spec("monai"):
    from rfm_eval.tasks import segmentation  # noqa: F401

__all__ = [
    "NotApplicableError",
    "Predictions",
    "Task",
    "TaskContext",
    "TaskOutput",
    "TaskResult",
    "TaskStatus",
    "finetune",
    "probes",
    "register_task",
    "retrieval",
    "run_task",
    "tasks",
    "zeroshot",
]
