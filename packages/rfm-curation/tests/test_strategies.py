from __future__ import annotations

import numpy as np
import pytest

from rfm_curation.errors import ConfigError
from rfm_curation.hkmeans import Hierarchy, balanced_allocation
from rfm_curation.strategies import Candidates, create_strategy, list_strategies, resolve_budget


def _candidates(x: np.ndarray, labels: list[dict[str, int]] | None = None) -> Candidates:
    return Candidates(np.array([f"s{i:05d}" for i in range(len(x))]), np.arange(len(x)), x, labels or [])


def test_every_strategy_honours_budget_and_seed(long_tail: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = long_tail
    labels = [{"rare": 1} if t == 4 else {} for t in truth]
    assert {"random", "hkmeans", "chexficient", "label_balance"} <= set(list_strategies())
    for name in ("random", "hkmeans", "chexficient", "label_balance"):
        strategy = create_strategy(name)
        first = strategy.select(_candidates(x, labels), 300, seed=3)
        again = strategy.select(_candidates(x, labels), 300, seed=3)
        other = strategy.select(_candidates(x, labels), 300, seed=4)
        assert 0 < first.keep.sum() <= 300, name
        assert (first.keep == again.keep).all(), f"{name} is not deterministic for a seed"
        assert (first.keep != other.keep).any(), f"{name} ignores the seed"


def test_balanced_strategies_favour_the_long_tail_over_random(long_tail: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = long_tail
    rare = truth >= 3  # the two smallest clusters: 100 of 2,000 samples
    random_rare = create_strategy("random").select(_candidates(x), 300, seed=0).keep[rare].sum()
    hk = create_strategy("hkmeans", levels=[40, 5]).select(_candidates(x), 300, seed=0)
    assert hk.keep.sum() == 300
    assert hk.keep[rare].sum() >= 3 * random_rare
    bands = create_strategy("chexficient", prototypes=8).select(_candidates(x), 300, seed=0)
    assert bands.keep[rare].sum() > random_rare
    assert set(bands.band) <= {"central", "peripheral", "tail", "outlier"}
    assert not (bands.keep & bands.outlier).any(), "outliers are never kept"


def test_label_balance_boosts_rare_findings(long_tail: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = long_tail
    labels = [{"effusion": 1} if t == 4 else {"normal": 1} for t in truth]  # 20 effusions in 2,000
    choice = create_strategy("label_balance").select(_candidates(x, labels), 200, seed=0)
    assert choice.keep[truth == 4].sum() >= 15  # random would keep ~2 of 20
    assert (choice.band[truth == 4] == "effusion").all()


def test_balanced_allocation_splits_equally_down_the_tree() -> None:
    # 4 leaves of sizes 100, 100, 5, 1 under two top clusters {0, 1} and {2, 3}.
    h = Hierarchy(np.repeat(np.arange(4), [100, 100, 5, 1]), np.ones(206, np.float32), [np.array([0, 0, 1, 1])])
    assert balanced_allocation(h, 20).tolist() == [7, 7, 5, 1]


@pytest.mark.parametrize(("budget", "match"), [(0.0, "outside"), (1.5, "outside"), (-3, ">= 1"), ("half", "fraction")])
def test_budgets_outside_the_range_are_refused(budget: object, match: str) -> None:
    with pytest.raises(ConfigError, match=f"budget.*{match}"):
        resolve_budget(budget, 100)  # type: ignore[arg-type]


def test_budgets_resolve_fractions_and_counts() -> None:
    assert resolve_budget(0.227, 1_235_004) == 280_346
    assert resolve_budget(1.0, 7) == 7 and resolve_budget(50, 7) == 50
    with pytest.raises(ConfigError, match="empty input"):
        resolve_budget(0.5, 0)
    with pytest.raises(ConfigError, match="unknown selection strategy 'magic'"):
        create_strategy("magic")
