"""Selection strategies: the protocol, the registry, and the two strategies that need no clustering.

Every strategy gets the candidates left after deduplication and filters, a budget (a count, already resolved
from a fraction by :func:`resolve_budget`) and a seed, and returns what it kept with an explanation per
candidate (cluster, band, score). ``random`` is the baseline every other strategy is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rfm_curation.clustering import FloatArray, IntArray
from rfm_curation.errors import ConfigError, create_from
from rfm_data.registry import Registry

BoolArray = npt.NDArray[np.bool_]
NO_FINDING = "(no positive label)"


@dataclass
class Candidates:
    """The samples a strategy chooses from.

    Attributes:
        ids: sample id of each candidate.
        rows: row of each candidate in ``x``.
        x: L2-normalised embeddings of the whole store (None for strategies that need none).
        labels: structured labels of each candidate (``{name: 1 | 0 | -1}``).
    """

    ids: npt.NDArray[np.str_]
    rows: IntArray
    x: FloatArray | None
    labels: list[dict[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def embeddings(self, strategy: str) -> FloatArray:
        """The embedding matrix, or a ConfigError saying ``strategy`` needs one."""
        if self.x is None:
            raise ConfigError(f"strategy {strategy!r} needs embeddings; pass an embedding store")
        return self.x


@dataclass
class Choice:
    """A strategy's decision per candidate: kept or not, and why (cluster, band, score)."""

    keep: BoolArray
    cluster: IntArray
    band: npt.NDArray[np.str_]
    score: FloatArray
    outlier: BoolArray  # dropped as an outlier (reason ``outlier``) rather than for the budget

    @staticmethod
    def blank(n: int) -> Choice:
        """Nothing kept, no cluster (-1), no band, no score (NaN)."""
        return Choice(np.zeros(n, bool), np.full(n, -1, np.int64), np.full(n, "", dtype=object).astype(str),
                      np.full(n, np.nan, np.float32), np.zeros(n, bool))


class Strategy(Protocol):
    """Chooses at most ``budget`` of the candidates, deterministically for a given ``seed``."""

    def select(self, candidates: Candidates, budget: int, seed: int) -> Choice:
        """Decide for each candidate; ``sum(keep) <= budget``."""
        ...


STRATEGIES: Registry[Strategy] = Registry("selection strategy")


def create_strategy(name: str, **options: object) -> Strategy:
    """The strategy registered as ``name`` with keyword ``options``; ConfigError naming ``strategy`` if unknown."""
    return create_from(STRATEGIES, "strategy", name, **options)


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered strategy names matching a glob."""
    names: list[str] = STRATEGIES.names(pattern)
    return names


def resolve_budget(budget: float | int, total: int) -> int:
    """A budget as a count: a float in (0, 1] is a fraction of ``total``, an int ≥ 1 a count.

    Raises:
        ConfigError: naming ``budget`` when it is outside (0, 1] (float), below 1 (int), or ``total`` is 0.
    """
    if total < 1:
        raise ConfigError("budget: there are no samples to select from (empty input)")
    if isinstance(budget, bool) or not isinstance(budget, int | float | np.integer | np.floating):
        raise ConfigError(f"budget must be a fraction in (0, 1] or a count >= 1, got {budget!r}")
    if isinstance(budget, float | np.floating):
        if not 0.0 < float(budget) <= 1.0:
            raise ConfigError(f"budget={budget} is outside (0, 1]: give a fraction such as 0.227 or a count")
        return max(1, int(np.floor(float(budget) * total + 0.5)))
    if budget < 1:
        raise ConfigError(f"budget={budget} must be a count >= 1 (or a fraction in (0, 1])")
    return int(budget)


@dataclass(frozen=True)
class RandomStrategy:
    """Uniform sampling without replacement: the baseline."""

    def select(self, candidates: Candidates, budget: int, seed: int) -> Choice:
        choice = Choice.blank(len(candidates))
        picked = np.random.default_rng(seed).choice(len(candidates), min(budget, len(candidates)), replace=False)
        choice.keep[picked] = True
        return choice


@dataclass(frozen=True)
class LabelBalanceStrategy:
    """Label-aware balancing: weight = (1 / prevalence of the sample's rarest positive label) ** ``power``.

    Samples with no positive label form one group of their own. Weighted sampling without replacement
    (exponential keys, seeded) then favours rare findings; ``power`` > 1 boosts them further, 0 is random.
    Uncertain labels (-1) count as positive when ``uncertain_positive``.
    """

    power: float = 1.0
    uncertain_positive: bool = False

    def _positives(self, labels: dict[str, int]) -> list[str]:
        wanted = (1, -1) if self.uncertain_positive else (1,)
        return [name for name, value in labels.items() if value in wanted] or [NO_FINDING]

    def select(self, candidates: Candidates, budget: int, seed: int) -> Choice:
        if not candidates.labels or len(candidates.labels) != len(candidates):
            raise ConfigError("strategy label_balance needs the manifest's labels for every candidate")
        positives = [self._positives(lab) for lab in candidates.labels]
        counts: dict[str, int] = {}
        for names in positives:
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        n = len(candidates)
        weight = np.array([max((n / counts[name]) ** self.power for name in names) for names in positives])
        rng = np.random.default_rng(seed)
        # Efraimidis-Spirakis: the largest u**(1/w) are a weighted sample without replacement.
        keys = np.log(rng.random(n)) / weight
        choice = Choice.blank(n)
        choice.keep[np.argsort(-keys, kind="stable")[: min(budget, n)]] = True
        choice.score = weight.astype(np.float32)
        choice.band = np.array([min(names, key=counts.__getitem__) for names in positives], dtype=str)
        return choice


STRATEGIES.register("random")(RandomStrategy)
STRATEGIES.register("label_balance")(LabelBalanceStrategy)
