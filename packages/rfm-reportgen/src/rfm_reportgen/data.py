"""Data for report generation: report text corpora (decoder pretraining) and the image datasets' targets."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.loader import collate
from rfm_reportgen.config import Target, target_text

__all__ = ["RowLoader", "read_report_corpus", "target_ids", "targets_of", "text_rows"]


def read_report_corpus(url: str, target: Target, split: str | None = None) -> list[str]:
    """Non-empty ``target`` texts of a JSONL report corpus with ``findings`` / ``impression`` fields (the IU
    reports of ``../shared/data/iu_xray_reports/reports.jsonl``, or any export with those fields).

    Args:
        url: JSONL file (any fsspec URL), one report object per line.
        target: which section(s) to take.
        split: keep only rows whose ``split`` equals this; None keeps all.
    """
    if not io.exists(url):
        raise ConfigError(f"report corpus {url} does not exist: give a JSONL file with findings / impression")
    texts = []
    for n, line in enumerate(io.read_text(url).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{url} line {n} is not JSON ({err.msg}): one report object per line") from None
        if split is not None and row.get("split") != split:
            continue
        text = target_text(row.get("findings"), row.get("impression"), target)
        if text:
            texts.append(text)
    if not texts:
        raise ConfigError(f"{url}: no report has a non-empty {Target(target).value!r} (split={split!r})")
    return texts


def targets_of(dataset: str, target: Target, split: str | None = None) -> dict[str, str]:
    """``sample_id → target text`` of the rows of an rfm-data dataset that have one (manifest.parquet)."""
    columns = ["sample_id", "split", "report_findings", "report_impression", "status"]
    table = io.read_parquet(io.join(dataset, "manifest.parquet"), columns=columns).to_pylist()
    out = {}
    for row in table:
        if row.get("status") not in (None, "accepted") or (split is not None and row.get("split") != split):
            continue
        text = target_text(row.get("report_findings"), row.get("report_impression"), target)
        if text:
            out[str(row["sample_id"])] = text
    return out


def target_ids(dataset: str, target: Target, split: str | None = None) -> set[str]:
    """Sample ids with a non-empty ``target``; raises when there are none (nothing to train on)."""
    ids = set(targets_of(dataset, target, split))
    if not ids:
        raise ConfigError(f"{dataset}: no sample of split {split!r} has a {Target(target).value!r} text; choose "
                          "another target (findings / impression / findings_impression) or dataset")
    return ids


class RowLoader:
    """Batches of in-memory rows (dicts) in a seeded shuffled order per epoch, resumable mid-epoch: the
    loader contract of ``rfm_models.train.train`` (``set_epoch``, ``state_dict``, ``load_state_dict``).
    Used for report text (decoder pretraining) and for cached image tokens of a frozen encoder.

    Args:
        rows: one dict per sample, each with a ``sample_id``.
        batch_size: rows per batch (the last partial batch of an epoch is dropped).
        seed: seed of the order.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], batch_size: int, seed: int = 0) -> None:
        if batch_size < 1 or len(rows) < batch_size:
            raise ConfigError(f"batch_size={batch_size} needs 1 <= batch_size <= {len(rows)} (the rows available)")
        self.rows, self.batch_size, self.seed = list(rows), batch_size, seed
        self.epoch, self.consumed = 0, 0

    def __len__(self) -> int:
        return len(self.rows) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (keeps the position when resuming inside it)."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        """Position: epoch and texts consumed in it."""
        return {"epoch": self.epoch, "consumed": self.consumed, "batch_size": self.batch_size, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a :meth:`state_dict` position."""
        if int(state["batch_size"]) != self.batch_size or int(state["seed"]) != self.seed:
            raise ConfigError("RowLoader: resume needs the same batch_size and seed as the checkpoint")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.rows))
        while self.epoch == epoch and self.consumed + self.batch_size <= len(order):
            rows = order[self.consumed:self.consumed + self.batch_size]
            self.consumed += self.batch_size
            if self.consumed + self.batch_size > len(order):
                self.epoch, self.consumed = epoch + 1, 0  # the epoch ends with its last full batch
            yield collate([self.rows[i] for i in rows])


def text_rows(texts: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of a :class:`RowLoader` over report texts."""
    return [{"text": t, "sample_id": i} for i, t in enumerate(texts)]
