"""CheXficient band primitives: bands, budget split, farthest-point sampling and the whole per-batch rule."""

from __future__ import annotations

import numpy as np
import pytest

from rfm_curation.bands import (
    BANDS,
    Band,
    assign_bands,
    band_names,
    curation_budget,
    farthest_point_sampling,
    select_bands,
    split_budget,
    zscores,
)
from rfm_data.errors import ConfigError


def long_tailed_mixture(
    seed: int, sizes: tuple[int, ...] = (400, 200, 100, 40, 16), dim: int = 32, spread: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples around ``len(sizes)`` orthogonal prototypes with long-tailed cluster sizes."""
    rng = np.random.default_rng(seed)
    prototypes = np.eye(len(sizes), dim)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = prototypes[labels] + spread * rng.normal(size=(len(labels), dim)) / np.sqrt(dim)
    return x, prototypes, labels


# --- bands -------------------------------------------------------------------------------------------------


def test_band_codes_are_indices_in_order() -> None:
    assert [b.code for b in BANDS] == [0, 1, 2, 3]
    assert BANDS[Band.TAIL.code] is Band.TAIL
    assert band_names(np.array([3, 0, 2, 1], dtype=np.int8)).tolist() == ["outlier", "central", "tail", "peripheral"]


def test_assign_bands_hand_computed_cluster() -> None:
    # 19 samples at 1.0 and one at 10.0: μ = 1.45, σ = √3.8475 ≈ 1.96, so 10.0 lies 4.36 σ out.
    d = np.array([1.0] * 19 + [10.0])
    codes = assign_bands(d, np.zeros(20, dtype=np.int64), 1)
    assert codes.tolist() == [Band.CENTRAL.code] * 19 + [Band.OUTLIER.code]


def test_assign_bands_matches_per_cluster_statistics() -> None:
    rng = np.random.default_rng(0)
    clusters = rng.integers(0, 4, size=500)
    # Different scales per cluster: the band of a sample depends only on its own cluster's μ, σ.
    d = rng.standard_exponential(500) * (1 + clusters)
    codes = assign_bands(d, clusters, 5)  # cluster 4 is empty: allowed
    for c in range(4):
        mine = d[clusters == c]
        z = (mine - mine.mean()) / mine.std()
        expected = np.select([z <= 1, z <= 2, z <= 3], [0, 1, 2], default=3)
        assert codes[clusters == c].tolist() == expected.tolist()
    assert set(codes.tolist()) == {0, 1, 2, 3}


def test_identical_distances_are_all_central_not_outliers() -> None:
    d = np.full(50, 0.3)  # σ = 0, and the float mean of 0.3s is not exactly 0.3
    assert np.all(assign_bands(d, np.zeros(50, dtype=np.int64), 1) == Band.CENTRAL.code)
    assert np.all(zscores(d, np.zeros(50, dtype=np.int64), 1) == 0)


def test_small_clusters_cannot_have_outliers() -> None:
    # With m samples, the largest z-score is (m-1)/√m ≤ 3 for m ≤ 10.
    d = np.array([0.0] * 9 + [100.0])
    assert assign_bands(d, np.zeros(10, dtype=np.int64), 1)[-1] == Band.TAIL.code


@pytest.mark.parametrize(
    ("distances", "clusters", "match"),
    [
        ([0.1, np.nan], [0, 0], "distances"),
        ([0.1, 0.2], [0, 3], "clusters"),
        ([0.1, 0.2], [0], "same length"),
    ],
)
def test_assign_bands_rejects_bad_input(distances: list[float], clusters: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        assign_bands(np.array(distances), np.array(clusters), 2)


# --- budget split ------------------------------------------------------------------------------------------


def test_split_budget_is_proportional_to_sqrt_size() -> None:
    assert split_budget([400, 100], 30).tolist() == [20, 10]  # √400 : √100 = 2 : 1
    assert split_budget([400, 100], 30, power=1.0).tolist() == [24, 6]
    assert split_budget([400, 100], 30, power=0.0).tolist() == [15, 15]


def test_split_budget_caps_small_clusters_and_redistributes() -> None:
    # √ weights 31.6 : 2 : 2 give shares 88.3, 5.6, 5.6: the small ones are capped at 4, the rest goes to the big one.
    assert split_budget([1000, 4, 4, 0], 100).tolist() == [92, 4, 4, 0]
    assert split_budget([1000, 1, 1], 10).tolist() == [10, 0, 0]  # √ favours small clusters, but not to 1 each
    assert split_budget([5, 3], 100).tolist() == [5, 3]  # more budget than samples: everything


@pytest.mark.parametrize("seed", range(20))
def test_split_budget_invariants(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.zipf(1.5, size=rng.integers(1, 40)).clip(max=10_000) * rng.integers(0, 2, size=1)[0]
    sizes = np.where(rng.random(len(sizes)) < 0.2, 0, sizes)
    budget = int(rng.integers(0, sizes.sum() + 5))
    q = split_budget(sizes, budget, power=float(rng.uniform(0, 1.5)))
    assert q.sum() == min(budget, sizes.sum())
    assert np.all((q >= 0) & (q <= sizes))
    larger = sizes[:, None] > sizes[None, :]
    assert np.all(q[:, None] >= q[None, :], where=larger), "a larger cluster never gets a smaller quota"


@pytest.mark.parametrize(
    ("sizes", "budget", "power", "match"),
    [
        ([3, -1], 2, 0.5, "cluster_sizes"),
        ([3.5], 2, 0.5, "cluster_sizes"),
        ([3], -1, 0.5, "budget"),
        ([3], 1, -0.5, "power"),
    ],
)
def test_split_budget_rejects_bad_input(sizes: list[float], budget: int, power: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split_budget(np.array(sizes), budget, power)


# --- farthest-point sampling -------------------------------------------------------------------------------


def reference_fps(x: np.ndarray, k: int, first: int) -> list[int]:
    """A slow, obviously-correct max-min sampler (L2) to check the vectorised one against."""
    picked = [first]
    while len(picked) < k:
        rest = [i for i in range(len(x)) if i not in picked]
        gaps = [min(float(np.linalg.norm(x[i] - x[j])) for j in picked) for i in rest]
        picked.append(rest[int(np.argmax(gaps))])
    return picked


def test_fps_matches_reference_implementation() -> None:
    x = np.random.default_rng(3).normal(size=(60, 5))
    assert farthest_point_sampling(x, 12, metric="l2", first=7).tolist() == reference_fps(x, 12, 7)


def test_fps_on_a_line_picks_the_ends_then_the_middle() -> None:
    x = np.arange(11, dtype=np.float64)[:, None]
    assert farthest_point_sampling(x, 3, metric="l2", first=0).tolist() == [0, 10, 5]


def test_fps_cosine_covers_every_direction_before_repeating_one() -> None:
    rng = np.random.default_rng(1)
    directions = np.eye(4, 16)
    labels = np.repeat(np.arange(4), [50, 5, 5, 1])
    x = directions[labels] * rng.uniform(0.5, 3.0, size=(len(labels), 1)) + 0.01 * rng.normal(size=(61, 16))
    picked = farthest_point_sampling(x, 4, seed=0)
    assert sorted(labels[picked].tolist()) == [0, 1, 2, 3]  # the single-sample direction included


def test_fps_is_deterministic_and_handles_duplicates() -> None:
    x = np.repeat(np.random.default_rng(2).normal(size=(3, 4)), 4, axis=0)
    a = farthest_point_sampling(x, 12, seed=5)
    assert np.array_equal(a, farthest_point_sampling(x, 12, seed=5))
    assert sorted(a.tolist()) == list(range(12))  # all rows, none twice, although 9 are duplicates


def test_fps_rejects_bad_input() -> None:
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_sampling(x, 6)
    with pytest.raises(ValueError, match="first"):
        farthest_point_sampling(x, 2, first=5)
    with pytest.raises(ConfigError, match="metric"):
        farthest_point_sampling(x, 2, metric="manhattan")


# --- the whole rule ----------------------------------------------------------------------------------------


def test_select_bands_keeps_tail_drops_outliers_and_honours_budget() -> None:
    x, protos, labels = long_tailed_mixture(seed=0)
    # Plant 3 gross outliers in the big cluster: still nearest to prototype 0, but far from it.
    x[:3] = protos[0] + 0.9 * np.eye(3, x.shape[1], k=10)
    sel = select_bands(x, protos, ratio=0.2, seed=0)
    assert np.array_equal(sel.clusters, labels)
    assert np.all(sel.bands[:3] == Band.OUTLIER.code) and not sel.keep[:3].any()
    assert np.all(sel.keep[sel.bands == Band.TAIL.code])
    assert not sel.keep[sel.bands == Band.OUTLIER.code].any()
    candidates = sel.bands <= Band.PERIPHERAL.code
    assert sel.keep[candidates].sum() == curation_budget(int(candidates.sum()), 0.2) == sel.quotas.sum()
    assert np.array_equal(np.bincount(labels[candidates & sel.keep], minlength=5), sel.quotas)


def test_select_bands_over_represents_rare_clusters_relative_to_random() -> None:
    x, protos, labels = long_tailed_mixture(seed=1)
    sel = select_bands(x, protos, ratio=0.2, seed=0)
    kept_share = np.bincount(labels[sel.keep], minlength=5) / sel.keep.sum()
    random_share = np.bincount(labels, minlength=5) / len(labels)  # what a random subset keeps in expectation
    assert kept_share[-1] > 2 * random_share[-1]  # the 16-sample cluster
    assert kept_share[0] < random_share[0]  # the 400-sample cluster


def test_select_bands_is_reproducible_from_its_seed() -> None:
    x, protos, _ = long_tailed_mixture(seed=2)
    a, b = select_bands(x, protos, seed=7), select_bands(x, protos, seed=7)
    assert np.array_equal(a.keep, b.keep)
    rng = np.random.default_rng(7)
    first, second = select_bands(x, protos, seed=rng), select_bands(x, protos, seed=rng)
    assert np.array_equal(first.keep, a.keep) and not np.array_equal(first.keep, second.keep)


def test_ratio_one_keeps_everything_but_outliers() -> None:
    x, protos, _ = long_tailed_mixture(seed=3)
    sel = select_bands(x, protos, ratio=1.0)
    assert np.array_equal(sel.keep, sel.bands != Band.OUTLIER.code)


@pytest.mark.parametrize(
    ("embeddings", "prototypes", "ratio", "match"),
    [
        (np.full((4, 3), np.nan), np.eye(2, 3), 0.2, "embeddings"),
        (np.ones((4, 3)), np.full((2, 3), np.inf), 0.2, "prototypes"),
        (np.ones((4, 5)), np.eye(2, 3), 0.2, "embeddings has dimension 5"),
        (np.ones(4), np.eye(2, 3), 0.2, "embeddings must be a 2-D"),
        (np.ones((4, 3)), np.eye(2, 3), 0.0, "ratio"),
        (np.ones((4, 3)), np.eye(2, 3), 1.5, "ratio"),
    ],
)
def test_select_bands_rejects_bad_input(
    embeddings: np.ndarray, prototypes: np.ndarray, ratio: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        select_bands(embeddings, prototypes, ratio=ratio)
