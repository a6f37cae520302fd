"""Deduplication: exact (content hash), perceptual (image dHash) and semantic (SemDeDup-style).

Each finder returns duplicate *pairs*; :func:`group_duplicates` joins them into connected groups and keeps one
deterministic representative per group: the member with the smallest ``sample_id``, so the choice does not
depend on row order, seeds or thread count.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rfm_curation.clustering import FloatArray, IntArray, kmeans_tree

SEMANTIC_THRESHOLD = 0.97  # cosine similarity at or above which two embeddings count as the same sample
PHASH_MAX_DISTANCE = 8  # differing bits (of 256) at or below which two images count as the same picture
SEMANTIC_CLUSTER_SIZE = 128  # average k-means cluster size within which pairs are compared


@dataclass
class Pairs:
    """Duplicate pairs as row indices (``left < right`` not required) with their similarity."""

    left: IntArray
    right: IntArray
    similarity: FloatArray

    @staticmethod
    def empty() -> Pairs:
        return Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))


def _close_pairs(block: FloatArray, threshold: float) -> tuple[IntArray, IntArray, FloatArray]:
    """Pairs ``i < j`` of rows of ``block`` with inner product ≥ ``threshold`` (faiss range search)."""
    index = faiss.IndexFlatIP(block.shape[1])
    index.add(block)
    # Range search returns only the few near-identical pairs; it keeps values strictly above the radius.
    lims, dist, found = index.range_search(block, float(np.nextafter(np.float32(threshold), np.float32(-1))))
    query = np.repeat(np.arange(len(block)), np.diff(lims.astype(np.int64)).astype(np.int64))
    upper = found > query
    return query[upper], found[upper].astype(np.int64), dist[upper]


@dataclass
class DuplicateGroups:
    """Per row: its group (-1 when unique), whether it is the kept representative, and that representative."""

    group: IntArray
    representative: IntArray  # row of the group's representative; the row itself when unique
    similarity: FloatArray  # best similarity to another member (NaN when unique)

    @property
    def removed(self) -> npt.NDArray[np.bool_]:
        """Rows that are duplicates of a kept representative."""
        out: npt.NDArray[np.bool_] = self.representative != np.arange(len(self.group))
        return out


def group_duplicates(n: int, pairs: Pairs, ids: npt.NDArray[np.str_]) -> DuplicateGroups:
    """Connected groups of ``pairs`` over ``n`` rows; representative = smallest ``ids`` in the group."""
    similarity = np.full(n, np.nan, dtype=np.float32)
    if len(pairs.left) == 0:
        return DuplicateGroups(np.full(n, -1, np.int64), np.arange(n, dtype=np.int64), similarity)
    graph = coo_matrix((np.ones(len(pairs.left), np.int8), (pairs.left, pairs.right)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(n)
    best = np.full(len(sizes), n, dtype=np.int64)
    np.minimum.at(best, comp, rank)
    row_of_rank = np.argsort(rank)
    representative = row_of_rank[best[comp]]
    group = np.where(sizes[comp] > 1, comp, -1).astype(np.int64)
    for side in (pairs.left, pairs.right):
        np.fmax.at(similarity, side, pairs.similarity)
    return DuplicateGroups(group, representative, similarity)


def exact_pairs(hashes: npt.NDArray[np.str_]) -> Pairs:
    """Rows with identical non-empty content hashes, each paired with the first row of its hash."""
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    same = (sorted_hashes[1:] == sorted_hashes[:-1]) & (sorted_hashes[1:] != "")
    starts = np.maximum.accumulate(np.where(np.concatenate([[True], ~same]), np.arange(len(order)), 0))
    dup = np.flatnonzero(np.concatenate([[False], same]))
    return Pairs(order[starts[dup]], order[dup], np.ones(len(dup), np.float32))


def perceptual_pairs(codes: npt.NDArray[np.uint8], max_distance: int = PHASH_MAX_DISTANCE) -> Pairs:
    """Pairs of binary hash codes ``(n, bytes)`` within ``max_distance`` bits (faiss binary range search, O(n²))."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    bits = codes.shape[1] * 8
    index = faiss.IndexBinaryFlat(bits)
    index.add(codes)
    # faiss binary range search keeps distances strictly below the radius.
    lims, dist, found = index.range_search(codes, max_distance + 1)
    query = np.repeat(np.arange(len(codes)), np.diff(lims.astype(np.int64)).astype(np.int64))
    other = query != found
    return Pairs(query[other], found[other].astype(np.int64), 1 - dist[other].astype(np.float32) / bits)


def semantic_pairs(
    x: FloatArray, rows: IntArray, threshold: float = SEMANTIC_THRESHOLD, cluster_size: int = SEMANTIC_CLUSTER_SIZE,
    seed: int = 0, passes: int = 2,
) -> Pairs:
    """SemDeDup-style: cluster ``x[rows]``, then pairs with cosine ≥ ``threshold`` inside each cluster.

    A pair split across two clusters is missed by one clustering (about 1 % of planted duplicates in the
    benchmark), so ``passes`` independent clusterings (seeds ``seed``, ``seed + 1``, …) are searched and their
    pairs joined. Returns pairs as positions into ``rows``.
    """
    if len(rows) < 2:
        return Pairs.empty()
    found = [_pairs_within_clusters(x, rows, threshold, cluster_size, seed + p) for p in range(max(1, passes))]
    left = np.concatenate([f.left for f in found])
    right = np.concatenate([f.right for f in found])
    sims = np.concatenate([f.similarity for f in found])
    return Pairs(left, right, sims)


def _pairs_within_clusters(x: FloatArray, rows: IntArray, threshold: float, cluster_size: int, seed: int) -> Pairs:
    clusters = kmeans_tree(x, rows, max(1, len(rows) // cluster_size), seed, niter=10)
    order = np.argsort(clusters.labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(clusters.labels))])
    groups = [order[bounds[c] : bounds[c + 1]] for c in range(len(bounds) - 1) if bounds[c + 1] - bounds[c] > 1]

    def search(members: IntArray) -> tuple[IntArray, IntArray, FloatArray]:
        i, j, s = _close_pairs(np.ascontiguousarray(x[rows[members]]), threshold)
        return members[i], members[j], s

    # Many small independent blocks: parallel over clusters, one thread each (the products release the GIL).
    with ThreadPoolExecutor(faiss.omp_get_max_threads(), initializer=faiss.omp_set_num_threads, initargs=(1,)) as pool:
        found = list(pool.map(search, groups))
    if not found:
        return Pairs.empty()
    return Pairs(np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]),
                 np.concatenate([f[2] for f in found]).astype(np.float32))
