"""What a benchmark evaluates: the observations, how labels are read, multi-label vs multi-class.

Labels in rfm shard datasets are sparse maps ``{observation: 1 | 0 | -1}``; an observation a sample does not
mention counts as ``absent_label`` (0, the CheXpert training convention) and ``-1`` (uncertain) is ignored by
every metric. Multi-class protocols read the single positive observation of each sample as its class;
samples with none or several positives are left out of multi-class metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from rfm_data.errors import ConfigError

__all__ = ["UNCERTAIN", "LabelMode", "Protocol", "class_index", "label_matrix"]

UNCERTAIN = -1


class LabelMode(str, Enum):
    """How the observations relate: independent findings or mutually exclusive classes."""

    MULTI_LABEL = "multi_label"
    MULTI_CLASS = "multi_class"


@dataclass(frozen=True)
class Protocol:
    """Observations scored and how.

    Attributes:
        observations: observation names, in report order (at least one).
        mode: multi-label (one-vs-rest AUROC per observation) or multi-class (accuracy + macro AUROC).
        absent_label: value of an observation a sample does not mention.
    """

    observations: tuple[str, ...]
    mode: LabelMode = LabelMode.MULTI_LABEL
    absent_label: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.observations:
            raise ConfigError("protocol.observations is empty: name the findings to evaluate, e.g. ['Pneumonia']")
        if self.mode == LabelMode.MULTI_CLASS and len(self.observations) < 2:
            raise ConfigError("a multi-class protocol needs at least 2 observations (classes)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return {"observations": list(self.observations), "mode": self.mode.value,
                "absent_label": self.absent_label, **({"extra": self.extra} if self.extra else {})}


def label_matrix(labels: Sequence[Mapping[str, int]], observations: Sequence[str], absent_label: int = 0
                 ) -> np.ndarray:
    """``(n, C)`` int8 labels: 1 / 0 / -1 (uncertain), unmentioned observations = ``absent_label``."""
    rows = [[int(item.get(o, absent_label)) for o in observations] for item in labels]
    return np.asarray(rows, dtype=np.int8).reshape(len(labels), len(observations))


def class_index(labels: Sequence[Mapping[str, int]], observations: Sequence[str]) -> np.ndarray:
    """Multi-class targets: index of the single positive observation, -1 where none or several are positive."""
    y = label_matrix(labels, observations, 0) == 1
    out = np.full(len(labels), -1, dtype=np.int64)
    single = y.sum(axis=1) == 1
    out[single] = np.argmax(y[single], axis=1)
    return out
