"""Deduplication methods by name (``exact``, ``perceptual``, ``semantic``): one registry entry each.

Each method sees the current candidates and returns duplicate pairs as positions into them; the
composition in :mod:`rfm_curation.select` groups them and drops all but each group's representative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rfm_curation.clustering import FloatArray, IntArray
from rfm_curation.dedup import (
    PHASH_MAX_DISTANCE,
    SEMANTIC_THRESHOLD,
    Pairs,
    exact_pairs,
    perceptual_pairs,
    semantic_pairs,
)
from rfm_curation.errors import ConfigError, CurationReason
from rfm_curation.phash import shard_hashes
from rfm_data.registry import Registry


@dataclass
class DedupInput:
    """Candidates for deduplication: manifest rows, their embedding rows, and where the shards are."""

    manifest: pa.Table
    positions: IntArray  # manifest rows of the candidates
    x: FloatArray | None
    store_rows: IntArray  # embedding row of each candidate (-1 when none)
    dataset_url: str
    seed: int


class DedupMethod(Protocol):
    """Finds duplicate pairs among candidates; ``reason`` labels the rows it removes."""

    @property
    def reason(self) -> CurationReason:
        """The reason code written for the rows it removes (read-only: implementations are frozen)."""
        ...

    def pairs(self, data: DedupInput) -> Pairs:
        """Duplicate pairs as positions into ``data.positions``."""
        ...


DEDUP_METHODS: Registry[DedupMethod] = Registry("deduplication method")


@dataclass(frozen=True)
class ExactDedup:
    """Identical source bytes (manifest ``content_hash``)."""

    reason: CurationReason = CurationReason.EXACT_DUPLICATE

    def pairs(self, data: DedupInput) -> Pairs:
        hashes = data.manifest["content_hash"].take(pa.array(data.positions)).to_numpy(zero_copy_only=False)
        return exact_pairs(np.asarray(hashes, dtype=str))


@dataclass(frozen=True)
class PerceptualDedup:
    """Visually identical images: 256-bit dHash of the stored pixels within ``max_distance`` bits."""

    max_distance: int = PHASH_MAX_DISTANCE
    reason: CurationReason = CurationReason.PERCEPTUAL_DUPLICATE

    def pairs(self, data: DedupInput) -> Pairs:
        if not 0 <= self.max_distance <= 256:
            raise ConfigError(f"dedup.perceptual.max_distance={self.max_distance} must be in 0..256")
        rows = data.manifest.select(["shard", "shard_row"]).take(pa.array(data.positions)).to_pydict()
        hashes = shard_hashes(data.dataset_url, rows["shard"], rows["shard_row"])
        return perceptual_pairs(hashes, self.max_distance)


@dataclass(frozen=True)
class SemanticDedup:
    """SemDeDup-style: cosine ≥ ``threshold`` within k-means clusters of the embeddings."""

    threshold: float = SEMANTIC_THRESHOLD
    reason: CurationReason = CurationReason.SEMANTIC_DUPLICATE

    def pairs(self, data: DedupInput) -> Pairs:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"dedup.semantic.threshold={self.threshold} must be a cosine in (0, 1]")
        if data.x is None:
            raise ConfigError("dedup.semantic needs embeddings; pass an embedding store or drop 'semantic'")
        has = data.store_rows >= 0
        found = semantic_pairs(data.x, data.store_rows[has], self.threshold, seed=data.seed)
        where: npt.NDArray[np.int64] = np.flatnonzero(has)
        return Pairs(where[found.left], where[found.right], found.similarity)


DEDUP_METHODS.register("exact")(ExactDedup)
DEDUP_METHODS.register("perceptual")(PerceptualDedup)
DEDUP_METHODS.register("semantic")(SemanticDedup)
