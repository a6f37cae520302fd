"""Clinical efficacy: do the observations the rfm-data labeler finds in a generated report match those it
finds in the reference? Precision / recall / F1 of positive findings, micro-averaged and per observation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from rfm_data.labels import OBSERVATIONS, create_labeler

__all__ = ["ClinicalStats", "UncertainPolicy", "clinical_stats", "prf"]


class UncertainPolicy(str, Enum):
    """How an uncertain mention (-1) counts: CheXpert-style reports differ, so it is an explicit choice."""

    NEGATIVE = "negative"
    POSITIVE = "positive"


@dataclass
class ClinicalStats:
    """Binary positive-finding matrices of generated and reference reports.

    Attributes:
        observations: column names.
        predicted: ``(N, C)`` bool, observation positive in the generated report.
        reference: ``(N, C)`` bool, positive in the reference.
    """

    observations: list[str]
    predicted: np.ndarray
    reference: np.ndarray

    def counts(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-observation TP, FP, FN over rows ``idx``."""
        p, r = self.predicted[idx], self.reference[idx]
        return (p & r).sum(axis=0), (p & ~r).sum(axis=0), (~p & r).sum(axis=0)

    def micro(self, idx: np.ndarray) -> tuple[float, float, float]:
        """Micro precision, recall, F1 over all observations of rows ``idx``."""
        tp, fp, fn = (int(c.sum()) for c in self.counts(idx))
        return prf(tp, fp, fn)

    def per_observation(self, idx: np.ndarray, column: int) -> tuple[float, float, float]:
        """Precision, recall, F1 of one observation over rows ``idx``."""
        tp, fp, fn = (int(c[column]) for c in self.counts(idx))
        return prf(tp, fp, fn)


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; each ``nan`` where its denominator is 0 (no prediction / no positive)."""
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return precision, recall, f1


def _positives(texts: Sequence[str], labeler_name: str, policy: UncertainPolicy) -> np.ndarray:
    labeler = create_labeler(labeler_name)
    results = labeler.label_batch(list(texts))
    # Empty or invalid text gets a result with no labels: no positive finding, as the labeler defines it.
    positive = {1, -1} if policy is UncertainPolicy.POSITIVE else {1}
    out = np.zeros((len(texts), len(OBSERVATIONS)), dtype=bool)
    for i, result in enumerate(results):
        for j, name in enumerate(OBSERVATIONS):
            out[i, j] = result.labels.get(name) in positive
    return out


def clinical_stats(hypotheses: Sequence[str], references: Sequence[str], labeler: str = "rule",
                   uncertain: UncertainPolicy = UncertainPolicy.NEGATIVE) -> ClinicalStats:
    """Label both sides with the rfm-data labeler ``labeler`` and keep positive findings.

    "No Finding" is an observation like the others (a normal report predicted normal is a true positive).
    """
    return ClinicalStats(list(OBSERVATIONS), _positives(hypotheses, labeler, uncertain),
                         _positives(references, labeler, uncertain))
