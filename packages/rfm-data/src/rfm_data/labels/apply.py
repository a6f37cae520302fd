"""Label a manifest: add ``report_labels`` (map<string, int8>) and ``report_labels_status`` columns.

Decisions:
- The labeler's output goes into its own column, ``report_labels``, not into ``labels``: ``labels`` holds the
  dataset's own labels (expert or dataset-supplied, e.g. MIMIC's or a hospital table's), whose names clash
  with ours ("Pneumonia", "No Finding"); overwriting them would lose them and make reruns depend on the
  previous run. The backend, its fingerprint and the sections used are stored in the Parquet metadata
  (``rfm.labels``) and in ``label_prevalence.json``.
- Text labelled: findings, then impression (``label_input``); the indication is never used (it states the
  question, "rule out pneumonia", not the answer). Rows without either get status ``empty``.
- Resumable: unique texts are labelled in chunks of ``chunk_size``; each finished chunk is written atomically
  to a sidecar cache (``<manifest>.labels-cache/<backend fingerprint>/``) keyed by text hash, so a killed
  run redoes at most one chunk. Idempotent: a rerun reads the cache and writes the same manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from rfm_data import io
from rfm_data.labels.base import Labeler, create_labeler, text_hash
from rfm_data.labels.evaluate import label_input
from rfm_data.labels.observations import OBSERVATIONS, LabelResult, LabelStatus, validate_labels
from rfm_data.manifest import LABELS_TYPE, read_manifest, write_manifest

MANIFEST_NAME = "manifest.parquet"
LABELS_COLUMN = "report_labels"
STATUS_COLUMN = "report_labels_status"
METADATA_KEY = b"rfm.labels"
SECTIONS = ("findings", "impression")


@dataclass
class LabelRunResult:
    """What :func:`label_manifest` did."""

    manifest_url: str
    backend: str
    fingerprint: str
    rows: int
    unique_texts: int
    from_cache: int
    by_status: dict[str, int]
    prevalence: dict[str, dict[str, int]]
    prevalence_json: str
    plot: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def manifest_url_of(url: str) -> str:
    """``url`` itself when it names a ``.parquet`` file, else ``url/manifest.parquet``."""
    return url if url.endswith(".parquet") else io.join(url, MANIFEST_NAME)


def coerce_options(options: Mapping[str, str]) -> dict[str, object]:
    """CLI ``KEY=VALUE`` strings → typed values (JSON numbers / booleans / null; anything else stays text)."""
    out: dict[str, object] = {}
    for key, value in options.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _cache_dir(manifest_url: str, fingerprint: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", fingerprint)[:80]
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    return io.join(f"{manifest_url}.labels-cache", f"{safe}-{digest}")


def _load_cache(cache_dir: str) -> dict[str, LabelResult]:
    if not io.exists(cache_dir):
        return {}
    cache: dict[str, LabelResult] = {}
    for url in io.list_files(cache_dir, suffixes=(".json",)):
        for key, record in json.loads(io.read_text(url)).items():
            cache[key] = LabelResult(validate_labels(record["labels"]), LabelStatus(record["status"]),
                                     record.get("detail", ""))
    return cache


def _write_chunk(cache_dir: str, results: Mapping[str, LabelResult]) -> None:
    keep = {k: {"labels": dict(r.labels), "status": r.status.value, "detail": r.detail}
            for k, r in results.items() if r.status is not LabelStatus.BACKEND_ERROR}
    if keep:
        name = hashlib.sha256("".join(sorted(keep)).encode()).hexdigest()[:20]
        io.write_text(io.join(cache_dir, f"chunk-{name}.json"), json.dumps(keep, sort_keys=True))


def label_texts(
    labeler: Labeler, texts: Sequence[str], cache_dir: str | None = None, chunk_size: int = 1024,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[list[LabelResult], int]:
    """Label ``texts`` with a chunked, resumable cache; returns the results and how many came from the cache."""
    cache = _load_cache(cache_dir) if cache_dir else {}
    keys = [text_hash(t) for t in texts]
    todo = list(dict.fromkeys(k for k in keys if k not in cache))
    from_cache = len(set(keys)) - len(todo)
    text_of = dict(zip(keys, texts, strict=True))
    for start in range(0, len(todo), max(1, chunk_size)):
        chunk = todo[start: start + chunk_size]
        results = dict(zip(chunk, labeler.label_batch([text_of[k] for k in chunk]), strict=True))
        if cache_dir:
            _write_chunk(cache_dir, results)
        cache.update(results)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return [cache[k] for k in keys], from_cache


def prevalence(results: Sequence[LabelResult]) -> dict[str, dict[str, int]]:
    """Counts of positive / negative / uncertain / not mentioned per observation over labelled reports."""
    labelled = [r for r in results if r.status in (LabelStatus.OK, LabelStatus.TRUNCATED)]
    names = {1: "positive", 0: "negative", -1: "uncertain"}
    table = {}
    for observation in OBSERVATIONS:
        counts = Counter(names[r.labels[observation]] for r in labelled if observation in r.labels)
        table[observation] = {key: counts.get(key, 0) for key in ("positive", "negative", "uncertain")}
        table[observation]["not_mentioned"] = len(labelled) - sum(counts.values())
    return table


def _with_columns(table: pa.Table, results: Sequence[LabelResult], metadata: Mapping[str, Any]) -> pa.Table:
    labels = pa.array([list(r.labels.items()) for r in results], type=LABELS_TYPE)
    status = pa.array([r.status.value for r in results], type=pa.string())
    for name, column in ((LABELS_COLUMN, labels), (STATUS_COLUMN, status)):
        index = table.schema.get_field_index(name)
        field_ = pa.field(name, column.type)
        table = table.set_column(index, field_, column) if index >= 0 else table.append_column(field_, column)
    meta = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)


def label_manifest(
    url: str, backend: str = "rule", options: Mapping[str, object] | None = None, chunk_size: int = 1024,
    plot: bool = True, labeler: Labeler | None = None,
) -> LabelRunResult:
    """Label the reports of a manifest in place (atomically) and write the prevalence table and plot beside it.

    Args:
        url: a dataset URL (its ``manifest.parquet`` is used) or a manifest ``.parquet`` URL.
        backend: registered labeler name (``rule``, ``keyword``, ``llm``, ``learned``).
        options: keyword arguments for the backend (e.g. ``{"url": ..., "model": ...}`` for ``llm``).
        chunk_size: unique texts per cached chunk (what a killed run may have to redo).
        plot: also write ``label_prevalence.png`` (needs matplotlib).
        labeler: an already built labeler (overrides ``backend`` / ``options``).
    """
    manifest_url = manifest_url_of(url)
    table = read_manifest(manifest_url)
    labeler = labeler or create_labeler(backend, **dict(options or {}))
    columns = [table.column(f"report_{s}").to_pylist() for s in SECTIONS]
    texts = [label_input(f or "", i or "") for f, i in zip(*columns, strict=True)]
    fingerprint = labeler.fingerprint()
    results, from_cache = label_texts(labeler, texts, _cache_dir(manifest_url, fingerprint), chunk_size)
    counts = prevalence(results)
    metadata = {"backend": labeler.name, "fingerprint": fingerprint, "sections": list(SECTIONS),
                "column": LABELS_COLUMN, "values": "1 positive, 0 negative, -1 uncertain; absent = not mentioned"}
    write_manifest(_with_columns(table, results, metadata), manifest_url)
    by_status = dict(sorted(Counter(r.status.value for r in results).items()))
    base = manifest_url.rsplit("/", 1)[0] if "/" in manifest_url else "."
    prevalence_json = io.join(base, "label_prevalence.json")
    io.write_text(prevalence_json, json.dumps({**metadata, "rows": len(results), "by_status": by_status,
                                               "prevalence": counts}, indent=2, sort_keys=True))
    plot_url = ""
    if plot:
        from rfm_data.labels.plot import plot_prevalence

        plot_url = io.join(base, "label_prevalence.png")
        labelled = sum(by_status.get(s.value, 0) for s in (LabelStatus.OK, LabelStatus.TRUNCATED))
        title = f"{labeler.name} labels: {labelled} labelled reports of {len(results)} rows"
        plot_prevalence(counts, plot_url, title=title)
    return LabelRunResult(manifest_url, labeler.name, fingerprint, len(results), len(set(texts)), from_cache,
                          by_status, counts, prevalence_json, plot_url)
