"""CheXficient's distance-band rule: the primitives shared by the offline strategy and the online selector.

BRIEF.md (paper 1) describes the rule: "every sample goes to its nearest prototype; per cluster with mean μ
and std σ of distances: central ≤ μ+σ, peripheral ≤ μ+2σ, tail ≤ μ+3σ (always kept), outliers beyond μ+3σ
(dropped); central and peripheral are cut to a curation ratio (0.2), the budget split ∝ n^0.5 across clusters,
picked by farthest-point sampling". Each step is one function here, and :func:`select_bands` chains them.

Conventions (all documented in ``docs/curation-online.md``):

* distances are cosine distances ``1 - cos(x, prototype)`` in ``[0, 2]`` (embeddings and prototypes are
  L2-normalised first), the geometry of a CLIP embedding space;
* μ and σ are computed over the samples given (one batch online, the whole pool offline), per cluster, with
  the population std (``ddof=0``);
* bands are stored as ``int8`` codes, the index into :data:`BANDS`; :func:`band_names` turns them into strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from rfm_data.errors import ConfigError

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
CodeArray = npt.NDArray[np.int8]
SeedLike = int | np.random.Generator | None


class Band(str, Enum):
    """Where a sample lies relative to its cluster's distance distribution (μ, σ)."""

    CENTRAL = "central"  # d ≤ μ+σ: typical, heavily subsampled
    PERIPHERAL = "peripheral"  # μ+σ < d ≤ μ+2σ: less typical, subsampled with the central ones
    TAIL = "tail"  # μ+2σ < d ≤ μ+3σ: rare but plausible, always kept
    OUTLIER = "outlier"  # d > μ+3σ: likely noise or mislabelled pairs, always dropped

    @property
    def code(self) -> int:
        """The ``int8`` code of this band in arrays returned by :func:`assign_bands`."""
        return BANDS.index(self)


BANDS: tuple[Band, ...] = tuple(Band)
"""All bands; a band's code is its index here (central=0, peripheral=1, tail=2, outlier=3)."""

# Relative slack on the band edges: a cluster whose distances are all equal has σ = 0 and μ may differ from
# each distance in the last bit, which must not turn identical samples into outliers.
_EDGE_RTOL = 1e-9


@dataclass(frozen=True)
class BandSelection:
    """The outcome of :func:`select_bands` for ``n`` samples and ``k`` prototypes.

    Attributes:
        keep: ``(n,)`` bool, the samples selected.
        clusters: ``(n,)`` int64, index of each sample's nearest prototype.
        bands: ``(n,)`` int8 band codes (index into :data:`BANDS`).
        distances: ``(n,)`` float64 cosine distance to the nearest prototype.
        zscores: ``(n,)`` float64 ``(d - μ) / σ`` of the sample's cluster (0 where σ = 0): how atypical it is.
        quotas: ``(k,)`` int64 number of central+peripheral samples kept per cluster.
    """

    keep: BoolArray
    clusters: IntArray
    bands: CodeArray
    distances: npt.NDArray[np.float64]
    zscores: npt.NDArray[np.float64]
    quotas: IntArray


def check_matrix(name: str, x: Any, dim: int | None = None) -> npt.NDArray[np.float32]:
    """``x`` as a C-contiguous float32 ``(n, d)`` array; ``ValueError`` naming ``name`` if it is not usable.

    Args:
        name: the field name used in error messages (e.g. ``"embeddings"``).
        x: array-like (numpy array, list, CPU torch tensor through ``np.asarray``).
        dim: the required number of columns, if any (e.g. the prototypes' dimension).
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has dimension {arr.shape[1]}, expected {dim} (the prototypes' dimension)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values ({int(np.sum(~np.isfinite(arr)))} entries)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """``ratio`` as a float in ``(0, 1]``; :class:`~rfm_data.errors.ConfigError` naming ``name`` otherwise."""
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0.0 < float(ratio) <= 1.0:
        raise ConfigError(f"{name} must be a number in (0, 1], got {ratio!r}")
    return float(ratio)


def l2_normalize(x: FloatArray) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm (all-zero rows stay zero instead of becoming NaN)."""
    x32 = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x32, axis=1, keepdims=True)
    return np.ascontiguousarray(x32 / np.maximum(norms, np.float32(1e-12)))


def nearest_prototypes(x: FloatArray, prototypes: FloatArray) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Each row's nearest prototype by cosine similarity (exact faiss inner-product search).

    Returns:
        ``(clusters, distances)``: int64 prototype indices and float64 cosine distances ``1 - cos``.
    """
    xn, cn = l2_normalize(x), l2_normalize(prototypes)
    index = faiss.IndexFlatIP(cn.shape[1])
    index.add(cn)
    sims, labels = index.search(xn, 1)
    return labels[:, 0].astype(np.int64), 1.0 - sims[:, 0].astype(np.float64)


def band_statistics(
    distances: FloatArray, clusters: IntArray, n_clusters: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], IntArray]:
    """Per-cluster ``(mean, population std, count)`` of ``distances``; empty clusters get 0, 0, 0."""
    d = np.asarray(distances, dtype=np.float64)
    c = np.asarray(clusters, dtype=np.int64)
    counts = np.bincount(c, minlength=n_clusters).astype(np.int64)
    safe = np.maximum(counts, 1)
    mean = np.bincount(c, weights=d, minlength=n_clusters) / safe
    # Two-pass variance: E[d²] − μ² cancels badly when the spread is tiny compared with the mean.
    var = np.bincount(c, weights=(d - mean[c]) ** 2, minlength=n_clusters) / safe
    return mean, np.sqrt(var), counts


def assign_bands(distances: FloatArray, clusters: IntArray, n_clusters: int) -> CodeArray:
    """Band codes per CheXficient: central ≤ μ+σ < peripheral ≤ μ+2σ < tail ≤ μ+3σ < outlier.

    μ and σ are the mean and population std of the distances of the samples given, per cluster. Note a
    property of the rule: with ``m`` samples in a cluster no z-score exceeds ``(m-1)/√m``, so clusters with
    fewer than 11 samples never have outliers and those with fewer than 6 never have tail samples.

    Args:
        distances: ``(n,)`` distance of each sample to its prototype.
        clusters: ``(n,)`` int prototype index of each sample, in ``[0, n_clusters)``.
        n_clusters: number of prototypes.

    Returns:
        ``(n,)`` int8 codes, indices into :data:`BANDS`.
    """
    d, c = _check_assignment(distances, clusters, n_clusters)
    mean, std, _ = band_statistics(d, c, n_clusters)
    excess = d - mean[c]
    sd = std[c]
    slack = _EDGE_RTOL * (1.0 + np.abs(mean[c]))
    codes = np.full(d.shape, Band.OUTLIER.code, dtype=np.int8)
    # Widest band first, so each narrower one overwrites: the result is the innermost band that fits.
    for band, width in ((Band.TAIL, 3.0), (Band.PERIPHERAL, 2.0), (Band.CENTRAL, 1.0)):
        codes[excess <= width * sd + slack] = band.code
    return codes


def _check_assignment(distances: Any, clusters: Any, n_clusters: int) -> tuple[npt.NDArray[np.float64], IntArray]:
    d = np.asarray(distances, dtype=np.float64)
    c = np.asarray(clusters)
    if d.ndim != 1 or c.shape != d.shape:
        raise ValueError(f"distances {d.shape} and clusters {c.shape} must be 1-D arrays of the same length")
    if not np.all(np.isfinite(d)):
        raise ValueError("distances contains NaN or infinite values")
    if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 0 or c.max() >= n_clusters):
        raise ValueError(f"clusters must be integers in [0, n_clusters={n_clusters})")
    return d, c.astype(np.int64)


def band_names(codes: CodeArray) -> npt.NDArray[np.str_]:
    """The band name (``"central"``, …) of each code, for reports and explanations."""
    names = np.array([b.value for b in BANDS])
    return names[np.asarray(codes, dtype=np.int64)]


def zscores(distances: FloatArray, clusters: IntArray, n_clusters: int) -> npt.NDArray[np.float64]:
    """``(d - μ) / σ`` within each sample's cluster; 0 where the cluster's σ is 0 (up to rounding)."""
    d, c = _check_assignment(distances, clusters, n_clusters)
    mean, std, _ = band_statistics(d, c, n_clusters)
    sd = std[c]
    spread = sd > _EDGE_RTOL * (1.0 + np.abs(mean[c]))  # below that, σ is rounding noise of identical values
    return np.divide(d - mean[c], sd, out=np.zeros_like(d), where=spread)


def split_budget(cluster_sizes: Any, budget: int, power: float = 0.5) -> IntArray:
    """Split ``budget`` across clusters ∝ ``n**power``, capped at each cluster's size ``n``.

    Water-filling: clusters whose proportional share exceeds their size get all their samples and leave
    the game; the leftover is re-split over the others until every share fits. Shares are then rounded
    down and the remaining units go to the largest fractional parts (ties to the lower index), so the quotas
    sum exactly to ``budget`` — or to ``sum(cluster_sizes)`` when the budget is larger than that.
    ``power=0.5`` is CheXficient's choice (small clusters get more than their proportional share);
    ``power=1`` is proportional, ``power=0`` equal.

    Args:
        cluster_sizes: ``(k,)`` non-negative integer sizes.
        budget: total number of samples to keep (≥ 0).
        power: exponent on the sizes (≥ 0).

    Returns:
        ``(k,)`` int64 quotas with ``0 ≤ quota ≤ size``.
    """
    sizes = _check_sizes(cluster_sizes)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
        raise ConfigError(f"budget must be a non-negative integer, got {budget!r}")
    if not np.isfinite(power) or power < 0:
        raise ConfigError(f"power must be a finite number ≥ 0, got {power!r}")
    if budget >= sizes.sum():
        return sizes.copy()
    shares = _water_fill(sizes, int(budget), sizes.astype(np.float64) ** power * (sizes > 0))
    quotas = np.floor(shares).astype(np.int64)
    leftover = int(budget) - int(quotas.sum())
    if leftover > 0:
        room = np.flatnonzero(quotas < sizes)
        order = room[np.lexsort((room, -(shares[room] - quotas[room])))]
        quotas[order[:leftover]] += 1
    return quotas


def _check_sizes(cluster_sizes: Any) -> IntArray:
    sizes = np.asarray(cluster_sizes)
    if sizes.ndim != 1 or (sizes.size and not np.issubdtype(sizes.dtype, np.integer)) or np.any(sizes < 0):
        raise ValueError("cluster_sizes must be a 1-D array of non-negative integers")
    return sizes.astype(np.int64)


def _water_fill(sizes: IntArray, budget: int, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shares = np.zeros(sizes.shape, dtype=np.float64)
    active = sizes > 0
    remaining = float(budget)
    # Each round caps at least one cluster, so this ends within k rounds.
    while active.any():
        idx = np.flatnonzero(active)
        share = remaining * weights[idx] / weights[idx].sum()
        full = share >= sizes[idx]
        if not full.any():
            shares[idx] = share
            break
        capped = idx[full]
        shares[capped] = sizes[capped]
        remaining -= float(sizes[capped].sum())
        active[capped] = False
    return shares


def _cosine_distances_to(x: npt.NDArray[np.float32], j: int) -> npt.NDArray[np.float32]:
    # Rows are unit-norm (normalised by the caller), so 1 - x·x_j is the cosine distance.
    out: npt.NDArray[np.float32] = 1.0 - x @ x[j]
    return out


def _l2_distances_to(x: npt.NDArray[np.float32], j: int) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = np.linalg.norm(x - x[j], axis=1)
    return out


_FPS_METRICS: dict[str, Callable[[npt.NDArray[np.float32], int], npt.NDArray[np.float32]]] = {
    "cosine": _cosine_distances_to,
    "l2": _l2_distances_to,
}


def farthest_point_sampling(
    x: Any, k: int, *, metric: str = "cosine", first: int | None = None, seed: SeedLike = None
) -> IntArray:
    """Greedy max-min (farthest-point) sampling of ``k`` rows of ``x``: a spread-out, diverse subset.

    Starts at ``first`` (or, if not given, at a row drawn from ``seed``, or row 0 when neither is given),
    then repeatedly adds the row whose distance to its nearest already-picked row is largest (ties to the
    lower index). Costs ``O(n·k·d)`` time and ``O(n)`` extra memory. Deterministic for a given start.

    Args:
        x: ``(n, d)`` array.
        k: number of rows to pick, ``0 ≤ k ≤ n``.
        metric: ``"cosine"`` (rows are L2-normalised first) or ``"l2"``.
        first: index of the first pick.
        seed: int or ``np.random.Generator`` drawing the first pick when ``first`` is not given.

    Returns:
        ``(k,)`` int64 row indices in the order they were picked.
    """
    if metric not in _FPS_METRICS:
        raise ConfigError(f"metric must be one of {sorted(_FPS_METRICS)}, got {metric!r}")
    pts = check_matrix("x", x)
    n = pts.shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= n:
        raise ValueError(f"k must be an integer in [0, {n}] (the number of rows), got {k!r}")
    if first is not None and not 0 <= first < n:
        raise ValueError(f"first must be a row index in [0, {n}), got {first}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if metric == "cosine":
        pts = l2_normalize(pts)
    start = first if first is not None else (int(np.random.default_rng(seed).integers(n)) if seed is not None else 0)
    distance_to = _FPS_METRICS[metric]
    picked = np.empty(k, dtype=np.int64)
    picked[0] = start
    gap = distance_to(pts, start).astype(np.float64)
    gap[start] = -np.inf  # never pick a row twice, even when duplicates make its gap 0
    for i in range(1, k):
        j = int(np.argmax(gap))
        picked[i] = j
        np.minimum(gap, distance_to(pts, j), out=gap)
        gap[j] = -np.inf
    return picked


def curation_budget(n_candidates: int, ratio: float) -> int:
    """How many of ``n_candidates`` central+peripheral samples a ``ratio`` keeps: ``round(ratio·n)``, half up."""
    return int(np.floor(check_ratio(ratio) * n_candidates + 0.5))


def select_bands(
    embeddings: Any, prototypes: Any, ratio: float = 0.2, power: float = 0.5, seed: SeedLike = 0
) -> BandSelection:
    """CheXficient's selection rule on one set of samples (a training batch online, the pool offline).

    1. Each sample goes to its nearest prototype (cosine); distances are ``1 - cos``.
    2. Bands per cluster from μ, σ of the distances of *these* samples (:func:`assign_bands`).
    3. Tail samples are all kept; outliers are all dropped.
    4. Central and peripheral samples together are cut to ``curation_budget(#central+#peripheral, ratio)``
       — ``ratio`` applies to the central+peripheral samples only, not to the whole batch, so the
       fraction kept overall is ``(tail + that budget) / n``;
    5. the budget is split across clusters ∝ ``n_c**power`` where ``n_c`` is the cluster's number of
       central+peripheral samples (:func:`split_budget`);
    6. within a cluster the quota is picked by farthest-point sampling (cosine) among its central+peripheral
       samples, the start drawn from ``seed``.

    Args:
        embeddings: ``(n, d)`` finite array (the joint image ⊕ text embedding in CheXficient).
        prototypes: ``(k, d)`` finite array.
        ratio: fraction of central+peripheral samples kept, in ``(0, 1]``.
        power: exponent of the budget split (0.5 in CheXficient).
        seed: int or ``np.random.Generator`` (advanced in place) for the farthest-point start points.

    Returns:
        A :class:`BandSelection`.
    """
    c = check_matrix("prototypes", prototypes)
    x = l2_normalize(check_matrix("embeddings", embeddings, dim=c.shape[1]))
    check_ratio(ratio)
    k = c.shape[0]
    clusters, distances = nearest_prototypes(x, c)
    bands = assign_bands(distances, clusters, k)
    keep = bands == Band.TAIL.code
    candidates = bands <= Band.PERIPHERAL.code
    sizes = np.bincount(clusters[candidates], minlength=k).astype(np.int64)
    quotas = split_budget(sizes, curation_budget(int(candidates.sum()), ratio), power)
    rng = np.random.default_rng(seed)
    for cluster in np.flatnonzero(quotas):
        members = np.flatnonzero(candidates & (clusters == cluster))
        q = int(quotas[cluster])
        chosen = members if q == len(members) else members[farthest_point_sampling(x[members], q, seed=rng)]
        keep[chosen] = True
    return BandSelection(keep, clusters, bands, distances, zscores(distances, clusters, k), quotas)
