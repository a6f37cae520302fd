"""The evaluation-task contract and registry.

A task is a class registered by name in :data:`tasks` (``@register_task("name")``); the runner builds it
with the options of the evaluation config (``tasks.create(name, **options)``) and calls :func:`run_task`,
which does the common part. A task implements two methods:

* ``predict(ctx: TaskContext) -> TaskOutput`` — compute per-sample predictions on ``ctx.split`` (scores,
  ranks, per-image Dice, ...) from ``ctx.features(split)`` (cached image-encoder features and, for
  vision-language models, projected embeddings) or from the images themselves (``ctx.dataset``;
  fine-tuning, segmentation), plus JSON-able ``details`` (per-class counts, prompts, ...).
* ``metrics(predictions) -> dict[name, metric_fn]`` — each headline metric as a function of row indices
  ``metric_fn(idx) -> float`` (nan where undefined). The runner bootstraps each over patients
  (:func:`rfm_eval.stats.bootstrap`), and ``rfm-eval compare`` reuses the same functions on two runs'
  saved predictions for paired bootstraps: define metrics only through ``predictions.arrays``.

Optional: ``plot(predictions, result, url)`` writes the task's PNG; ``needs_text = True`` marks tasks that
need a text tower (skipped with a recorded reason for image-only models).

Minimal plug-in (e.g. segmentation in another module)::

    @register_task("my_task")
    class MyTask(Task):
        def predict(self, ctx: TaskContext) -> TaskOutput:
            feats = ctx.features(ctx.split)
            score = ...  # (n,) per sample
            return TaskOutput(Predictions(feats.sample_ids, feats.patient_ids, {"score": score}))

        def metrics(self, predictions: Predictions) -> dict[str, MetricFn]:
            s = predictions.arrays["score"]
            return {"mean_score": lambda idx: float(s[idx].mean())}

The module defining the task must be imported for registration: add it to ``rfm_eval.tasks.__init__``.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from threadpoolctl import threadpool_limits

from rfm_data import io
from rfm_data.registry import Registry
from rfm_eval.features import FeatureSet
from rfm_eval.handle import ModelHandle, ModelKind
from rfm_eval.jsonutil import dumps, to_jsonable
from rfm_eval.protocol import Protocol
from rfm_eval.stats import Estimate, MetricFn, bootstrap

__all__ = ["PREDICTIONS_NAME", "NotApplicableError", "Predictions", "Task", "TaskContext", "TaskOutput", "TaskResult",
           "TaskStatus", "headline_estimates", "register_task", "run_task", "tasks"]

PREDICTIONS_NAME = "predictions.safetensors"


@dataclass
class Predictions:
    """Per-sample outputs of a task, row-aligned: what metrics (and paired comparisons) are computed from.

    Attributes:
        sample_ids: sample id per row (compare aligns two runs on it).
        groups: resampling unit per row (patient id).
        arrays: named arrays whose first dimension is the row.
        meta: JSON-able facts the metric functions need (class names, label fractions, ...).
    """

    sample_ids: list[str]
    groups: list[str]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def take(self, idx: np.ndarray) -> Predictions:
        """The rows ``idx`` (in that order)."""
        return Predictions([self.sample_ids[i] for i in idx], [self.groups[i] for i in idx],
                           {k: v[idx] for k, v in self.arrays.items()}, dict(self.meta))

    def save(self, url: str) -> None:
        """Write as one safetensors file (ids and meta in its metadata: nothing to unpickle)."""
        header = {"sample_ids": json.dumps(self.sample_ids), "groups": json.dumps(self.groups),
                  "meta": json.dumps(self.meta)}
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        with io.atomic_write(url) as f:
            f.write(save_safetensors(arrays, metadata=header))

    @classmethod
    def load(cls, url: str) -> Predictions:
        """Read a file written by :meth:`save`."""
        data = io.read_bytes(url)
        arrays = load_safetensors(data)
        # safetensors layout: 8-byte little-endian header length, then the JSON header with __metadata__.
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])["__metadata__"]
        return cls(json.loads(header["sample_ids"]), json.loads(header["groups"]), arrays,
                   json.loads(header["meta"]))


@dataclass
class TaskOutput:
    """What ``Task.predict`` returns: predictions plus JSON-able details for the task's report."""

    predictions: Predictions
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    """Everything a task may use.

    Attributes:
        model: the model under evaluation (``model.image_encoder()``, ``model.vision_language()``).
        dataset: shard dataset URL.
        split: the split to evaluate on.
        train_split: the split adapted tasks (probes, kNN, fine-tuning) train on.
        protocol: observations and label mode of the benchmark.
        out: this task's output folder URL.
        features: ``features(split) -> FeatureSet``, cached: call it, do not re-extract.
        seed: seed of every random choice.
        batch_size: images per forward pass.
        progress: whether to show progress bars.
    """

    model: ModelHandle
    dataset: str
    split: str
    train_split: str
    protocol: Protocol
    out: str
    features: Callable[[str], FeatureSet]
    seed: int = 0
    batch_size: int = 64
    progress: bool = True


class NotApplicableError(Exception):
    """Raised by ``predict`` when the task does not apply to this data (e.g. no reports); the reason is kept."""


class TaskStatus(str, Enum):
    """Whether a task produced metrics."""

    OK = "ok"
    SKIPPED = "skipped"


@dataclass
class TaskResult:
    """One task's outcome, written to ``<out>/<task>/result.json``.

    Attributes:
        task: registered name.
        status: ok or skipped.
        reason: why it was skipped ("" when ok).
        headline: metric name → estimate with its bootstrap CI.
        details: task-specific JSON-able facts.
        n: rows evaluated.
        seconds: wall time of predict + bootstrap.
        files: output files (relative to the task folder).
    """

    task: str
    status: TaskStatus
    reason: str = ""
    headline: dict[str, Estimate] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    n: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return {"task": self.task, "status": self.status.value, "reason": self.reason, "n": self.n,
                "seconds": round(self.seconds, 3), "headline": {k: v.to_dict() for k, v in self.headline.items()},
                "details": to_jsonable(self.details), "files": self.files}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """Inverse of :meth:`to_dict`."""
        return cls(data["task"], TaskStatus(data["status"]), data.get("reason", ""),
                   {k: Estimate.from_dict(v) for k, v in data.get("headline", {}).items()},
                   data.get("details", {}), int(data.get("n", 0)), float(data.get("seconds", 0.0)),
                   list(data.get("files", [])))


class Task(ABC):
    """Base class of evaluation tasks (see the module docstring for the contract)."""

    needs_text: ClassVar[bool] = False
    name: str = ""

    @abstractmethod
    def predict(self, ctx: TaskContext) -> TaskOutput:
        """Per-sample predictions on ``ctx.split``."""

    @abstractmethod
    def metrics(self, predictions: Predictions) -> dict[str, MetricFn]:
        """Headline metrics as functions of row indices."""

    def plot(self, predictions: Predictions, result: TaskResult, url: str) -> bool:
        """Write a PNG to ``url``; False when the task has none."""
        return False


tasks: Registry[Task] = Registry("evaluation task")


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator registering a :class:`Task` subclass under ``name`` (its options = constructor kwargs)."""

    def add(cls: type[Task]) -> type[Task]:
        def factory(**options: Any) -> Task:
            task = cls(**options)
            task.name = name
            return task

        tasks.register(name)(factory)
        return cls

    return add


def headline_estimates(task: Task, predictions: Predictions, n_boot: int, seed: int, level: float = 0.95
                       ) -> dict[str, Estimate]:
    """Bootstrap every metric of ``task`` over patients (the same resamples for all metrics: same seed)."""
    groups = np.asarray(predictions.groups)
    with threadpool_limits(1):  # thousands of tiny sklearn calls: threads only add synchronisation
        return {name: bootstrap(fn, len(predictions), groups, n_boot=n_boot, seed=seed, level=level)
                for name, fn in task.metrics(predictions).items()}


def run_task(task: Task, ctx: TaskContext, n_boot: int = 1000, level: float = 0.95) -> TaskResult:
    """Predict, bootstrap the headline metrics, save predictions + ``result.json`` (+ PNG) under ``ctx.out``."""
    start = time.perf_counter()
    if task.needs_text and ctx.model.kind != ModelKind.VISION_LANGUAGE:
        reason = f"needs a vision-language model; {ctx.model.directory} is image-only"
        result = TaskResult(task.name, TaskStatus.SKIPPED, reason)
    else:
        try:
            output = task.predict(ctx)
        except NotApplicableError as skip:
            return _finish(TaskResult(task.name, TaskStatus.SKIPPED, str(skip)), ctx, start)
        predictions = output.predictions
        predictions.save(io.join(ctx.out, PREDICTIONS_NAME))
        headline = headline_estimates(task, predictions, n_boot, ctx.seed, level)
        result = TaskResult(task.name, TaskStatus.OK, "", headline, output.details, len(predictions),
                            files=[PREDICTIONS_NAME, "result.json"])
        if task.plot(predictions, result, io.join(ctx.out, f"{task.name}.png")):
            result.files.append(f"{task.name}.png")
    return _finish(result, ctx, start)


def _finish(result: TaskResult, ctx: TaskContext, start: float) -> TaskResult:
    result.seconds = time.perf_counter() - start
    io.write_text(io.join(ctx.out, "result.json"), dumps(result.to_dict()))
    return result
