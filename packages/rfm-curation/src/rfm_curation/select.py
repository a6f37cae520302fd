"""Composition: deduplication → quality filters → selection strategy, with every decision explained.

:func:`curate` checks all inputs before any work, computes every decision in memory, then writes the outputs
(each atomically, ``curation.json`` last as the completion marker)::

    OUT/selection.parquet   sample_id, kept, reason, cluster, band, score, duplicate_of (every manifest row)
    OUT/manifest.parquet    the input manifest plus curation_kept / curation_reason (an rfm-data manifest)
    OUT/duplicates.parquet  duplicate groups: method, group, sample_id, representative, similarity
    OUT/report.md, report.png   cluster sizes, label prevalence, duplicates and reasons, before / after
    OUT/curation.json       resolved configuration and counts
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rfm_curation import dedup_methods, strategies
from rfm_curation.clustering import FloatArray, IntArray
from rfm_curation.dedup import group_duplicates
from rfm_curation.embeddings import EmbeddingStore, load_normalized
from rfm_curation.errors import ConfigError, CurationReason, create_from
from rfm_curation.filters import QualityFilter, create_filter
from rfm_curation.outputs import write_outputs
from rfm_data import io
from rfm_data.manifest import read_manifest

MANIFEST_NAME = "manifest.parquet"
KIND_PREFERENCE = ("joint", "image", "text")


@dataclass
class CurationConfig:
    """What :func:`curate` does. ``budget``: a fraction in (0, 1] of the accepted samples, or a count."""

    strategy: str = "hkmeans"
    budget: float | int = 0.227
    seed: int = 0
    kind: str | None = None  # embedding kind; default: joint, else image, else text
    # Curate only this split (e.g. "train": evaluation samples must never enter a training subset); the budget
    # fraction is then of the split's accepted samples. None curates every accepted sample.
    split: str | None = None
    # Keep the mix of this manifest column (e.g. "dataset" of a pooled dataset, a site, a scanner): the budget is
    # split across its values in proportion to their candidates and the strategy runs within each. Balancing
    # strategies otherwise shift the mix towards small sources, away from that of the evaluation data.
    stratify: str | None = None
    dedup: Sequence[str] = ("exact", "semantic")
    filters: Sequence[str] = ()
    strategy_options: dict[str, Any] = field(default_factory=dict)
    dedup_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    filter_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CurationResult:
    """Where the outputs went, and the counts that summarise them."""

    out: str
    total: int
    accepted: int
    kept: int
    budget: int
    by_reason: dict[str, int]
    seconds: float

    def summary(self) -> str:
        """One line for a terminal."""
        reasons = ", ".join(f"{k} {v}" for k, v in self.by_reason.items() if k)
        return (f"kept {self.kept} of {self.accepted} accepted ({self.total} in the manifest; budget {self.budget}); "
                f"dropped: {reasons or 'none'}; {self.seconds:.1f} s → {self.out}")


def manifest_url_of(url: str) -> str:
    """A dataset folder or a manifest file URL → the manifest file URL."""
    return url if url.endswith(".parquet") else io.join(url, MANIFEST_NAME)


@dataclass
class _Plan:
    """Everything checked before any work: built components and the aligned inputs."""

    manifest: pa.Table
    dataset_url: str
    store: EmbeddingStore | None
    kind: str
    store_rows: IntArray  # embedding row per manifest row (-1 when none)
    budget: int
    strategy: strategies.Strategy
    dedups: list[dedup_methods.DedupMethod]
    filters: list[QualityFilter]


def _align(manifest_ids: npt.NDArray[np.str_], store_ids: npt.NDArray[np.str_]) -> IntArray:
    """Embedding row per manifest row; ConfigError naming ``embeddings.ids`` if a store id is not in the manifest."""
    sorter = np.argsort(manifest_ids, kind="stable")
    pos = np.searchsorted(manifest_ids, store_ids, sorter=sorter)
    pos = np.minimum(pos, len(manifest_ids) - 1)
    found = manifest_ids[sorter[pos]] == store_ids
    if not found.all():
        missing = store_ids[~found]
        raise ConfigError(f"embeddings.ids: {len(missing)} ids are not in the manifest, e.g. {missing[:3].tolist()}")
    rows = np.full(len(manifest_ids), -1, dtype=np.int64)
    rows[sorter[pos]] = np.arange(len(store_ids))
    return rows


def _pick_kind(store: EmbeddingStore, kind: str | None) -> str:
    if kind:
        store._dim(kind)  # raises naming embeddings.kind
        return kind
    return next((k for k in KIND_PREFERENCE if k in store.dims), store.kinds[0])


def _plan(manifest_url: str, embeddings_url: str | None, cfg: CurationConfig) -> _Plan:
    url = manifest_url_of(manifest_url)
    if not io.exists(url):
        raise ConfigError(f"manifest: {url} does not exist (give an rfm-data dataset folder or its manifest.parquet)")
    manifest = read_manifest(url)
    candidates = pc.equal(manifest["status"], "accepted")
    if cfg.split is not None:
        candidates = pc.and_(candidates, pc.equal(manifest["split"], cfg.split))
    accepted = int(pc.sum(candidates).as_py() or 0)
    if cfg.split is not None and accepted == 0:
        raise ConfigError(f"split: no accepted sample has split {cfg.split!r}; the manifest has "
                          f"{sorted(set(manifest['split'].to_pylist()))} (or give split=None)")
    budget = strategies.resolve_budget(cfg.budget, accepted)
    if cfg.stratify is not None and cfg.stratify not in manifest.schema.names:
        raise ConfigError(f"stratify: the manifest has no column {cfg.stratify!r}; its columns: "
                          f"{', '.join(manifest.schema.names)} (e.g. stratify='dataset' for a pooled dataset)")
    strategy = strategies.create_strategy(cfg.strategy, **cfg.strategy_options)
    dedups = [create_from(dedup_methods.DEDUP_METHODS, "dedup", n, **cfg.dedup_options.get(n, {})) for n in cfg.dedup]
    filters = [create_filter(n, **cfg.filter_options.get(n, {})) for n in cfg.filters]
    ids = np.asarray(manifest["sample_id"].to_numpy(zero_copy_only=False), dtype=str)
    store, kind, rows = None, "", np.full(len(ids), -1, dtype=np.int64)
    if embeddings_url:
        store = EmbeddingStore(embeddings_url)
        kind = _pick_kind(store, cfg.kind)
        rows = _align(ids, store.ids())
    dataset_url = url.rsplit("/", 1)[0] if "/" in url else "."
    return _Plan(manifest, dataset_url, store, kind, rows, budget, strategy, dedups, filters)


@dataclass
class Decisions:
    """Per manifest row: reason ("" = kept), cluster, band, score, duplicate_of; plus duplicate groups."""

    reason: npt.NDArray[np.object_]
    cluster: IntArray
    band: npt.NDArray[np.object_]
    score: FloatArray
    duplicate_of: npt.NDArray[np.object_]
    duplicate_groups: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def start(n: int) -> Decisions:
        return Decisions(np.full(n, "", dtype=object), np.full(n, -1, np.int64), np.full(n, "", dtype=object),
                         np.full(n, np.nan, np.float32), np.full(n, "", dtype=object))

    def open_rows(self) -> IntArray:
        """Manifest rows nothing has dropped yet."""
        return np.flatnonzero(self.reason == "")


def _deduplicate(plan: _Plan, x: FloatArray | None, ids: npt.NDArray[np.str_], d: Decisions, seed: int) -> None:
    for method in plan.dedups:
        positions = d.open_rows()
        data = dedup_methods.DedupInput(plan.manifest, positions, x, plan.store_rows[positions], plan.dataset_url,
                                        seed)
        groups = group_duplicates(len(positions), method.pairs(data), ids[positions])
        removed = positions[groups.removed]
        d.reason[removed] = method.reason.value
        d.duplicate_of[removed] = ids[positions[groups.representative[groups.removed]]]
        in_group = np.flatnonzero(groups.group >= 0)
        d.duplicate_groups += [
            {"method": method.reason.value, "group": f"{method.reason.value}-{int(groups.group[i])}",
             "sample_id": ids[positions[i]], "representative": ids[positions[groups.representative[i]]],
             "similarity": float(groups.similarity[i])}
            for i in in_group
        ]


def _filter(plan: _Plan, d: Decisions) -> None:
    for f in plan.filters:
        drops = f.drops(plan.manifest)
        d.reason[(d.reason == "") & drops] = f.reason.value


def proportional_budgets(sizes: Sequence[int], budget: int) -> list[int]:
    """``budget`` split in proportion to ``sizes`` by largest remainders (sums to ``budget`` when it fits)."""
    total = sum(sizes)
    exact = [budget * n / total for n in sizes]
    out = [int(e) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: exact[i] - out[i], reverse=True)
    for i in by_remainder[:budget - sum(out)]:
        out[i] += 1
    return [min(b, n) for b, n in zip(out, sizes, strict=True)]


def _strata(plan: _Plan, column: str | None, open_rows: IntArray) -> list[IntArray]:
    """Positions in ``open_rows`` of each value of ``column`` (one stratum of everything without it)."""
    if column is None:
        return [np.arange(len(open_rows))]
    values = np.asarray(plan.manifest[column].take(pa.array(open_rows)).to_numpy(zero_copy_only=False)).astype(str)
    return [np.flatnonzero(values == v) for v in sorted(set(values))]


def _select(plan: _Plan, x: FloatArray | None, ids: npt.NDArray[np.str_], d: Decisions, seed: int,
            stratify: str | None = None) -> None:
    open_rows = d.open_rows()
    cells = plan.manifest["labels"].take(pa.array(open_rows))
    # Building a dict per row costs seconds at a million rows: skip it when no row has any label.
    has_labels = any(len(chunk.keys) for chunk in cells.chunks)
    labels = [dict(c or []) for c in cells.to_pylist()] if has_labels else [{}] * len(open_rows)
    strata = _strata(plan, stratify, open_rows)
    next_cluster = 0
    for pos, budget in zip(strata, proportional_budgets([len(p) for p in strata], plan.budget), strict=True):
        rows = open_rows[pos]
        cands = strategies.Candidates(ids[rows], plan.store_rows[rows], x, [labels[i] for i in pos])
        choice = plan.strategy.select(cands, budget, seed) if budget > 0 else strategies.Choice.blank(len(rows))
        d.reason[rows[~choice.keep]] = CurationReason.NOT_SELECTED.value
        d.reason[rows[choice.outlier]] = CurationReason.OUTLIER.value
        # Cluster ids stay unique across strata (each stratum numbers its own from 0).
        d.cluster[rows] = np.where(choice.cluster >= 0, choice.cluster + next_cluster, -1)
        next_cluster = int(d.cluster[rows].max(initial=next_cluster - 1)) + 1
        d.band[rows], d.score[rows] = choice.band, choice.score


def curate(
    manifest_url: str, embeddings_url: str | None, out: str, cfg: CurationConfig | None = None
) -> CurationResult:
    """Deduplicate, filter and select a budgeted subset of a dataset; write the selection and its report.

    Args:
        manifest_url: an rfm-data dataset folder or its ``manifest.parquet`` URL.
        embeddings_url: an embedding store (:mod:`rfm_curation.embeddings`) aligned by ``sample_id``; None
            runs only what needs no embeddings (exact / perceptual dedup, filters, random, label_balance).
        out: output folder URL.
        cfg: what to do; defaults to :class:`CurationConfig`.

    Raises:
        ConfigError: for bad input (NaN / inf or zero embeddings, unknown ids, budget outside (0, 1], empty
            input, unknown names), naming the field; nothing is written then.
    """
    cfg = cfg or CurationConfig()
    clock = _Stopwatch()
    plan = _plan(manifest_url, embeddings_url, cfg)
    x = load_normalized(plan.store, plan.kind) if plan.store is not None else None
    ids = np.asarray(plan.manifest["sample_id"].to_numpy(zero_copy_only=False), dtype=str)
    d = Decisions.start(len(ids))
    d.reason[np.asarray(plan.manifest["status"].to_numpy(zero_copy_only=False)) != "accepted"] = "quarantined"
    if cfg.split is not None:
        other = np.asarray(plan.manifest["split"].to_numpy(zero_copy_only=False)) != cfg.split
        d.reason[(d.reason == "") & other] = CurationReason.OTHER_SPLIT.value
    if x is not None:
        d.reason[(d.reason == "") & (plan.store_rows < 0)] = CurationReason.NO_EMBEDDING.value
    clock.lap("load")
    _deduplicate(plan, x, ids, d, cfg.seed)
    clock.lap("dedup")
    _filter(plan, d)
    if len(d.open_rows()) == 0:
        raise ConfigError("no candidates left after deduplication and filters (empty input): nothing to select")
    clock.lap("filters")
    _select(plan, x, ids, d, cfg.seed, cfg.stratify)
    clock.lap("strategy")
    config = {**asdict(cfg), "manifest": manifest_url, "embeddings": embeddings_url, "kind": plan.kind}
    counts = write_outputs(out, plan.manifest, ids, d, config, plan.budget, clock.laps)
    kept = int((d.reason == "").sum())
    accepted = len(ids) - int((d.reason == "quarantined").sum())
    return CurationResult(out, len(ids), accepted, kept, plan.budget, counts, clock.total())


class _Stopwatch:
    """Seconds per stage, reported in curation.json so users see where the time goes."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start
