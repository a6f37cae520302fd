"""CheXficient's prototype bands applied offline, over the whole pool instead of one batch at a time.

Uses the shared primitives of :mod:`rfm_curation.bands` (band rule, budget split ∝ n^0.5, farthest-point
sampling). Offline differences, and why:

* the pool has a fixed *budget* rather than a per-batch curation ratio: tail samples are kept first, then
  central + peripheral samples fill what is left of the budget (split ∝ n^0.5 over prototypes, picked by
  farthest-point sampling); if the tail alone exceeds the budget it is cut the same way;
* prototypes are k-means centroids of the pool (no warm-up / EMA: nothing is training);
* 32 prototypes as in the paper up to 32k samples, then one per ~1,024 samples: farthest-point sampling
  costs O(n·k) per cluster, so a million samples in 32 clusters would take hours;
* nearest prototypes come from :func:`rfm_curation.clustering.assign` (chunked, no normalised copy of the pool)
  instead of ``bands.nearest_prototypes``; distances follow the same convention, ``1 - cos``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfm_curation.bands import Band, assign_bands, band_names, farthest_point_sampling, split_budget, zscores
from rfm_curation.clustering import FloatArray, IntArray, kmeans_tree
from rfm_curation.strategies import STRATEGIES, BoolArray, Candidates, Choice

PAPER_PROTOTYPES = 32
SAMPLES_PER_PROTOTYPE = 1024


def default_prototypes(n: int) -> int:
    """32 prototypes (the paper's K), or one per 1,024 samples for larger pools."""
    return max(PAPER_PROTOTYPES, n // SAMPLES_PER_PROTOTYPE)


def _pick(x: FloatArray, rows: IntArray, pool: BoolArray, clusters: IntArray, budget: int, k: int,
          rng: np.random.Generator) -> BoolArray:
    """``budget`` of the ``pool`` samples: split ∝ n^0.5 over clusters, farthest-point sampled inside each."""
    keep = np.zeros(len(pool), dtype=bool)
    quotas = split_budget(np.bincount(clusters[pool], minlength=k).astype(np.int64), budget, power=0.5)
    in_pool = np.flatnonzero(pool)
    order = in_pool[np.argsort(clusters[in_pool], kind="stable")]
    bounds = np.searchsorted(clusters[order], np.arange(k + 1))
    for cluster in np.flatnonzero(quotas):
        members = order[bounds[cluster] : bounds[cluster + 1]]
        q = int(quotas[cluster])
        if q < len(members):
            members = members[farthest_point_sampling(x[rows[members]], q, seed=rng)]
        keep[members] = True
    return keep


@dataclass(frozen=True)
class PrototypeBandsStrategy:
    """CheXficient prototype bands, offline.

    Args:
        prototypes: number of prototypes (default :func:`default_prototypes`).
        niter: k-means iterations for the prototypes.
    """

    prototypes: int | None = None
    niter: int = 20

    def select(self, candidates: Candidates, budget: int, seed: int) -> Choice:
        x = candidates.embeddings("chexficient")
        n = len(candidates)
        k = min(n, self.prototypes or default_prototypes(n))
        fit = kmeans_tree(x, candidates.rows, k, seed, self.niter)  # flat k-means below 256 prototypes
        distances = 1.0 - fit.similarity.astype(np.float64)
        bands = assign_bands(distances, fit.labels, k)
        tail = bands == Band.TAIL.code
        rng = np.random.default_rng(seed)
        if tail.sum() >= budget:
            keep = _pick(x, candidates.rows, tail, fit.labels, budget, k, rng)
        else:
            core = bands <= Band.PERIPHERAL.code
            keep = tail | _pick(x, candidates.rows, core, fit.labels, budget - int(tail.sum()), k, rng)
        choice = Choice.blank(n)
        choice.keep, choice.cluster = keep, fit.labels
        choice.band = band_names(bands)
        choice.score = zscores(distances, fit.labels, k).astype(np.float32)
        choice.outlier = bands == Band.OUTLIER.code
        return choice


STRATEGIES.register("chexficient")(PrototypeBandsStrategy)
