from __future__ import annotations

import faiss
import numpy as np

from rfm_curation.clustering import kmeans_tree
from rfm_curation.hkmeans import default_levels


def test_the_two_level_tree_makes_about_k_clusters_deterministically_whatever_the_threads() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = np.arange(0, 6000, 2)  # a subset of the rows, as after deduplication
    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        single = kmeans_tree(x, rows, 300, seed=5, niter=5)
        faiss.omp_set_num_threads(2)
        double = kmeans_tree(x, rows, 300, seed=5, niter=5)
    finally:
        faiss.omp_set_num_threads(before)
    assert 250 <= len(single.centroids) <= 300
    assert single.labels.max() == len(single.centroids) - 1 and len(single.labels) == len(rows)
    assert (single.labels == double.labels).all()
    np.testing.assert_allclose(single.similarity, np.sum(x[rows] * single.centroids[single.labels], axis=1),
                               rtol=1e-4, atol=1e-5)
    sizes = np.bincount(single.labels)
    assert sizes.max() < 10 * sizes.mean(), "leaves are shared out in proportion to cell sizes"


def test_default_levels_shrink_tenfold() -> None:
    assert default_levels(1_235_004) == [9648, 964, 96]
    assert default_levels(63) == [8]
    assert default_levels(2) == [2]
