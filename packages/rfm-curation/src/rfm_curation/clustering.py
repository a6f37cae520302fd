"""Spherical k-means and nearest-centroid assignment on L2-normalised embeddings, all through faiss.

Functions take the full embedding matrix ``x`` plus ``rows`` (the candidate rows) and gather rows chunk by
chunk, so selecting from 95 % of a 2.5 GB matrix never makes a second 2.5 GB copy.

:func:`kmeans_tree` reaches many clusters cheaply: a coarse k-means with about sqrt(k) centroids, then a
k-means inside each coarse cell with a share of the k leaves proportional to the cell's size. Every
point is compared with sqrt(k) + k_cell centroids per iteration instead of k, which is what makes
10,000 clusters over a million points affordable on two cores (flat k-means is measured beside it in
tools/benchmarks/bench_curation.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
ASSIGN_CHUNK = 65_536
FLAT_BELOW = 256  # below this many clusters a single flat k-means is cheap enough


@dataclass
class Clusters:
    """Cluster of each row (aligned with the ``rows`` it was computed for), with centroids and similarity."""

    labels: IntArray
    centroids: FloatArray
    similarity: FloatArray  # cosine similarity of each row to its centroid


def spherical_kmeans(
    x: FloatArray, k: int, seed: int, niter: int = 20, init: FloatArray | None = None
) -> FloatArray:
    """``k`` unit-norm centroids of the rows of ``x`` (C-contiguous float32), seeded."""
    k = max(1, min(k, len(x)))
    # min_points_per_centroid=1: small clusters are legitimate here (hierarchy tops, tiny datasets), and faiss
    # would otherwise print a warning for each; max_points_per_centroid caps faiss's own training subsample.
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)
    km.train(np.ascontiguousarray(x, dtype=np.float32), init_centroids=init)
    centroids: FloatArray = np.asarray(km.centroids, dtype=np.float32)
    return centroids


def assign(x: FloatArray, rows: IntArray, centroids: FloatArray) -> tuple[IntArray, FloatArray]:
    """Nearest centroid (by inner product) of each of ``x[rows]``, and the similarity to it."""
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    labels = np.empty(len(rows), dtype=np.int64)
    sims = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), ASSIGN_CHUNK):
        chunk = np.ascontiguousarray(x[rows[start : start + ASSIGN_CHUNK]])
        d, i = index.search(chunk, 1)
        labels[start : start + len(chunk)] = i[:, 0]
        sims[start : start + len(chunk)] = d[:, 0]
    return labels, sims


def _training_sample(rows: IntArray, k: int, rng: np.random.Generator, per_centroid: int = 256) -> IntArray:
    # faiss would subsample too, but only after we had gathered every row; sampling the indices first keeps
    # the gathered copy at k * per_centroid rows.
    cap = k * per_centroid
    return np.sort(rng.choice(rows, cap, replace=False)) if len(rows) > cap else rows


def flat_kmeans(x: FloatArray, rows: IntArray, k: int, seed: int, niter: int = 20, per_centroid: int = 256) -> Clusters:
    """One k-means over ``x[rows]`` with ``k`` centroids trained on at most ``per_centroid * k`` rows, all assigned."""
    rng = np.random.default_rng(seed)
    centroids = spherical_kmeans(x[_training_sample(rows, k, rng, per_centroid)], k, seed, niter)
    labels, sims = assign(x, rows, centroids)
    return Clusters(labels, centroids, sims)


def _leaf_shares(sizes: IntArray, k: int) -> IntArray:
    """k leaves split over cells in proportion to size (largest remainder), at least 1, at most the size."""
    exact = sizes / sizes.sum() * k
    shares = np.maximum(np.floor(exact).astype(np.int64), 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for cell in order[: max(0, k - int(shares.sum()))]:
        shares[cell] += 1
    out: IntArray = np.minimum(shares, sizes)
    return out


def kmeans_tree(
    x: FloatArray, rows: IntArray, k: int, seed: int, niter: int = 20, per_centroid: int = 256
) -> Clusters:
    """About ``k`` clusters of ``x[rows]`` by two-level (coarse → per-cell) spherical k-means.

    Args:
        x: L2-normalised embeddings, all rows.
        rows: the rows to cluster.
        k: total number of clusters wanted (the result may have slightly fewer when cells are tiny).
        seed: seeds every k-means and subsample.
        niter: k-means iterations at each level.
        per_centroid: training rows per centroid at most (the rest are only assigned).

    Returns:
        Clusters aligned with ``rows``; labels are 0..len(centroids)-1. Deterministic for a seed, whatever the
        number of threads.
    """
    k = max(1, min(k, len(rows)))
    if k < FLAT_BELOW:
        return flat_kmeans(x, rows, k, seed, niter, per_centroid)
    coarse = flat_kmeans(x, rows, int(np.ceil(np.sqrt(k))), seed, niter, per_centroid)
    sizes = np.bincount(coarse.labels, minlength=len(coarse.centroids)).astype(np.int64)
    shares = _leaf_shares(np.maximum(sizes, 1), k)
    order = np.argsort(coarse.labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    cells = [order[bounds[c] : bounds[c + 1]] for c in range(len(sizes))]

    def fit(cell: int) -> Clusters:
        return flat_kmeans(x, rows[cells[cell]], int(shares[cell]), seed + 1 + cell, niter, per_centroid)

    # Cells are small: one single-threaded faiss call per cell, cells in parallel. OpenMP inside each small
    # call spends more time synchronising (and spin-waiting, 3x slower on a shared machine) than computing.
    with ThreadPoolExecutor(faiss.omp_get_max_threads(), initializer=faiss.omp_set_num_threads, initargs=(1,)) as pool:
        fits = list(pool.map(fit, [c for c in range(len(sizes)) if len(cells[c])]))
    labels = np.empty(len(rows), dtype=np.int64)
    sims = np.empty(len(rows), dtype=np.float32)
    offset = 0
    for members, fine in zip([c for c in cells if len(c)], fits, strict=True):
        labels[members] = fine.labels + offset
        sims[members] = fine.similarity
        offset += len(fine.centroids)
    return Clusters(labels, np.concatenate([f.centroids for f in fits]), sims)
