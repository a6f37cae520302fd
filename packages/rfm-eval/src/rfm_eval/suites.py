"""Suites: named sets of tasks with their options (a registry; ``rfm-eval run --suite NAME``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rfm_data.registry import Registry

__all__ = ["Suite", "register_suite", "suites"]


@dataclass(frozen=True)
class Suite:
    """Tasks to run, in order, each with its constructor options.

    Attributes:
        name: registry name.
        tasks: task name → options (tasks not registered at run time, e.g. an uninstalled plug-in, are skipped
            with a recorded reason).
        description: one line for ``rfm-eval list``.
    """

    name: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


suites: Registry[Suite] = Registry("suite")


def register_suite(suite: Suite) -> Suite:
    """Register ``suite`` under its name."""
    suites.register(suite.name)(lambda: suite)
    return suite


register_suite(Suite("quick", {"zeroshot": {}, "retrieval": {}, "linear_probe": {"fractions": [1.0]},
                               "knn": {"k": 20}},
                     "zero-shot, retrieval, linear probe on all labels, kNN: frozen features only (minutes on CPU)"))
register_suite(Suite("standard", {"zeroshot": {}, "retrieval": {},
                                  "linear_probe": {"fractions": [0.01, 0.1, 1.0]}, "knn": {"k": 20},
                                  "finetune": {"epochs": 2}, "segmentation": {}},
                     "everything: probes at 1/10/100 % labels, fine-tuning, segmentation where masks exist"))
register_suite(Suite("probe", {"linear_probe": {"fractions": [0.01, 0.1, 1.0]}, "knn": {"k": 20}},
                     "image-only: linear probe at label fractions and kNN"))
# The data-efficiency study's protocol: headline tasks only (no kNN / fine-tuning), the probe at 1 % and 100 % of
# the labels, and lung segmentation sized for CPU CI. Measured on a quick-study model (test_vit, 2 CPU cores, the
# 228 train / 81 test hand-masked frontal images): image_size 64, 5 epochs = 4.3 s per evaluation (3 epochs:
# 4.1 s, Dice 0.83), Dice 0.85 vs 0.49 for an all-foreground mask. ``data_root`` (the covid_chestxray_ieee8023
# folder) is only known at run time: pass it as a task option, e.g. ``{"segmentation": {"data_root": ...}}``.
STUDY_SEGMENTATION = {"image_size": 64, "epochs": 5}
register_suite(Suite("study", {"zeroshot": {}, "retrieval": {}, "linear_probe": {"fractions": [0.01, 1.0]},
                               "segmentation": dict(STUDY_SEGMENTATION)},
                     "data-efficiency study: zero-shot, retrieval, probe at 1/100 % labels, CPU-sized lung "
                     "segmentation (needs segmentation data_root)"))
