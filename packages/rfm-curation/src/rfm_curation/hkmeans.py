"""Hierarchical k-means with resampling and balanced sampling down the hierarchy (after Vo et al. 2024).

Written from the paper's description, not from its code:

1. Level 1 clusters the points (here with :func:`~rfm_curation.clustering.kmeans_tree`, which makes 10,000
   clusters over a million points affordable).
2. Level t+1 clusters the *centroids* of level t, so a dense region of the data weighs no more than a
   sparse one. Resampling refines each level: take the ``resample_points`` members closest to each centroid,
   re-run k-means on that union (started from the current centroids) and reassign. Equal samples per
   cluster pull the centroids towards a uniform cover of the embedding space instead of its density.
3. Balanced sampling: the budget is split equally over the top-level clusters (a cluster smaller than its
   share gives its rest to the others), each cluster's share equally over its children, and so on down to
   level 1, where members are drawn at random (seeded).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rfm_curation.bands import split_budget
from rfm_curation.clustering import FloatArray, IntArray, assign, kmeans_tree, spherical_kmeans
from rfm_curation.errors import ConfigError
from rfm_curation.strategies import STRATEGIES, Candidates, Choice

POINTS_PER_LEAF = 128  # default level-1 cluster size when no levels are given


def default_levels(n: int) -> list[int]:
    """Level sizes for ``n`` points: ~n/128 leaves (~√n below 16k points), then ten times fewer per level."""
    k1 = max(2, min(n, max(n // POINTS_PER_LEAF, round(n**0.5))))
    return [k1] + [k for k in (k1 // 10, k1 // 100) if k >= 2]


def _check_levels(levels: Sequence[int], n: int) -> list[int]:
    out = [int(k) for k in levels]
    if not out or any(k < 1 for k in out) or any(b >= a for a, b in itertools.pairwise(out)):
        raise ConfigError(f"strategy.hkmeans.levels={list(levels)} must be positive and strictly decreasing")
    return [min(k, n) for k in out]


def _resample(points: FloatArray, labels: IntArray, sims: FloatArray, centroids: FloatArray, per_cluster: int,
              seed: int, niter: int) -> FloatArray:
    """New centroids from k-means on the ``per_cluster`` members closest to each current centroid."""
    order = np.lexsort((-sims, labels))  # by cluster, closest first
    starts = np.searchsorted(labels[order], np.arange(len(centroids)))
    rank = np.arange(len(order)) - starts[labels[order]]
    chosen = order[rank < per_cluster]
    if len(chosen) < len(centroids):  # empty clusters: k-means on fewer points than centroids is undefined
        return centroids
    return spherical_kmeans(points[chosen], len(centroids), seed, niter, init=centroids)


@dataclass
class Hierarchy:
    """``point_cluster`` (level-1 cluster per point, with similarity) and ``parents[t]`` (level t → t+1)."""

    point_cluster: IntArray
    similarity: FloatArray
    parents: list[IntArray]


def build_hierarchy(x: FloatArray, rows: IntArray, levels: Sequence[int], seed: int, niter: int,
                    resample_steps: int, resample_points: int | None) -> Hierarchy:
    """Multi-level k-means of ``x[rows]`` with resampling at levels ≥ 2."""
    leaves = kmeans_tree(x, rows, levels[0], seed, niter)
    points, parents = leaves.centroids, []
    for t, k in enumerate(levels[1:], start=1):
        everyone = np.arange(len(points))
        centroids = spherical_kmeans(points, k, seed + 1000 * t, niter)
        labels, sims = assign(points, everyone, centroids)
        per_cluster = resample_points or max(1, int(np.median(np.bincount(labels, minlength=len(centroids)))))
        for step in range(resample_steps):
            centroids = _resample(points, labels, sims, centroids, per_cluster, seed + 1000 * t + step + 1, niter)
            labels, sims = assign(points, everyone, centroids)
        parents.append(labels)
        points = centroids
    return Hierarchy(leaves.labels, leaves.similarity, parents)


def balanced_allocation(h: Hierarchy, budget: int) -> IntArray:
    """Budget per level-1 cluster: equal splits (capped by size) from the top level down."""
    sizes = [np.bincount(h.point_cluster).astype(np.int64)]
    for parent in h.parents:
        sizes.append(np.bincount(parent, weights=sizes[-1], minlength=int(parent.max()) + 1).astype(np.int64))
    alloc = split_budget(sizes[-1], budget, power=0.0)
    for t in range(len(h.parents) - 1, -1, -1):
        parent, child_sizes = h.parents[t], sizes[t]
        child_alloc = np.zeros(len(child_sizes), dtype=np.int64)
        order = np.argsort(parent, kind="stable")
        bounds = np.searchsorted(parent[order], np.arange(len(alloc) + 1))
        for p in np.flatnonzero(alloc):
            children = order[bounds[p] : bounds[p + 1]]
            child_alloc[children] = split_budget(child_sizes[children], int(alloc[p]), power=0.0)
        alloc = child_alloc
    return alloc


@dataclass(frozen=True)
class HierarchicalKMeansStrategy:
    """Balanced sampling over a multi-level k-means hierarchy (Vo et al. 2024).

    Args:
        levels: clusters per level, finest first (e.g. ``(10000, 1000, 100)``); default from the data size.
        niter: k-means iterations per level.
        resample_steps: resampling rounds at each level ≥ 2.
        resample_points: members per cluster used in resampling (default: the median cluster size).
    """

    levels: Sequence[int] | None = None
    niter: int = 10
    resample_steps: int = 3
    resample_points: int | None = None

    def select(self, candidates: Candidates, budget: int, seed: int) -> Choice:
        x = candidates.embeddings("hkmeans")
        n = len(candidates)
        levels = _check_levels(self.levels, n) if self.levels else default_levels(n)
        h = build_hierarchy(x, candidates.rows, levels, seed, self.niter, self.resample_steps, self.resample_points)
        alloc = balanced_allocation(h, min(budget, n))
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(n), h.point_cluster))  # by cluster, random order inside
        starts = np.searchsorted(h.point_cluster[order], np.arange(len(alloc)))
        rank = np.arange(n) - starts[h.point_cluster[order]]
        choice = Choice.blank(n)
        choice.keep[order[rank < alloc[h.point_cluster[order]]]] = True
        choice.cluster = h.point_cluster
        top = h.point_cluster
        for parent in h.parents:
            top = parent[top]
        choice.band = np.char.add("top-", top.astype(str)) if h.parents else choice.band
        choice.score = h.similarity
        return choice


STRATEGIES.register("hkmeans")(HierarchicalKMeansStrategy)
