"""Predictions for the samples of a split: the generator's reports, or the retrieval baseline's (the
nearest training report by CLIP image-text similarity). Both write the same predictions table."""

from __future__ import annotations

import io as _pyio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset, collate
from rfm_data.transforms import cxr_eval_transform
from rfm_reportgen.config import GenerationConfig, Target
from rfm_reportgen.data import targets_of
from rfm_reportgen.export import load_generator

__all__ = ["Prediction", "align", "generate_reports", "read_predictions", "retrieve_reports", "write_predictions"]


@dataclass(frozen=True)
class Prediction:
    """One predicted report and its reference."""

    sample_id: str
    patient_id: str
    prediction: str
    reference: str
    system: str
    target: str


def _batches(dataset: str, split: str | None, ids: set[str], image_size: int,
             batch_size: int) -> Iterator[dict[str, Any]]:
    ds = ShardDataset(dataset, transform=cxr_eval_transform(image_size), split=split, ids=ids)
    for start in range(0, len(ds), batch_size):
        yield collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])


def _require(refs: dict[str, str], dataset: str, split: str | None, target: Target) -> None:
    if not refs:
        raise ConfigError(f"{dataset}: no sample of split {split!r} has a {target.value!r} reference to predict")


def generate_reports(model_dir: str, dataset: str, split: str | None = "test",
                     config: GenerationConfig | None = None, batch_size: int = 16,
                     device: str = "cpu") -> list[Prediction]:
    """Generate a report for every sample of ``split`` that has a reference for the model's target."""
    model = load_generator(model_dir, device=device)
    target = model.config.target
    refs = targets_of(dataset, target, split)
    _require(refs, dataset, split, target)
    out = []
    total = -(-len(refs) // batch_size)
    for batch in tqdm(_batches(dataset, split, set(refs), model.config.image_size, batch_size), total=total,
                      desc="generate", unit="batch"):
        texts = model.generate(batch["image"].to(device), config)
        out += [Prediction(s, p, t, refs[s], "generator", target.value)
                for s, p, t in zip(batch["sample_id"], batch["patient_id"], texts, strict=True)]
    return out


@torch.no_grad()
def retrieve_reports(clip_dir: str, dataset: str, target: Target = Target.FINDINGS, split: str | None = "test",
                     train_split: str = "train", batch_size: int = 32) -> list[Prediction]:
    """The retrieval baseline: for each ``split`` image, the ``train_split`` report of the same ``target`` whose
    CLIP text embedding is closest (cosine) to the image's embedding.

    Args:
        clip_dir: an rfm-models vision-language model directory (``rfm_models.load_pretrained``).
        dataset: rfm-data dataset with images and reports.
        target: section retrieved and scored.
        split: images to predict for; train_split: the report bank.
    """
    from rfm_models.export import load_pretrained

    target = Target(target)
    model = load_pretrained(clip_dir).eval()
    bank = sorted(set(targets_of(dataset, target, train_split).values()))
    if not bank:
        raise ConfigError(f"{dataset}: split {train_split!r} has no {target.value!r} report to retrieve from")
    text_emb = torch.cat([model.encode_text(bank[i:i + batch_size]) for i in range(0, len(bank), batch_size)])
    refs = targets_of(dataset, target, split)
    _require(refs, dataset, split, target)
    out = []
    for batch in tqdm(_batches(dataset, split, set(refs), model.config.image_size, batch_size), desc="retrieve",
                      unit="batch"):
        sims = model.encode_image(batch["image"]) @ text_emb.T
        best = sims.argmax(dim=1).tolist()
        out += [Prediction(s, p, bank[b], refs[s], "retrieval", target.value)
                for s, p, b in zip(batch["sample_id"], batch["patient_id"], best, strict=True)]
    return out


_FIELDS = ("sample_id", "patient_id", "prediction", "reference", "system", "target")


def write_predictions(predictions: Sequence[Prediction], url: str) -> None:
    """Write a predictions table (Parquet) atomically."""
    table = pa.table({f: [getattr(p, f) for p in predictions] for f in _FIELDS},
                     schema=pa.schema([(f, pa.string()) for f in _FIELDS]))
    buffer = _pyio.BytesIO()
    pq.write_table(table, buffer)
    io.write_bytes(url, buffer.getvalue())


def read_predictions(url: str) -> list[Prediction]:
    """Read a table written by :func:`write_predictions` (columns checked)."""
    if not io.exists(url):
        raise ConfigError(f"predictions file {url} does not exist")
    table = io.read_parquet(url)
    missing = [f for f in _FIELDS if f not in table.column_names]
    if missing:
        raise ConfigError(f"{url}: predictions table lacks columns {missing} (write it with write_predictions)")
    rows = table.to_pylist()
    return [Prediction(**{f: str(r[f] or "") for f in _FIELDS}) for r in rows]


def align(a: Sequence[Prediction], b: Sequence[Prediction]) -> tuple[list[Prediction], list[Prediction]]:
    """The rows of two prediction sets on the same samples, in the same order (for paired comparison)."""
    by_id = {p.sample_id: p for p in b}
    common = [p for p in a if p.sample_id in by_id]
    if not common:
        raise ConfigError("the two prediction sets share no sample id: they cannot be compared")
    return common, [by_id[p.sample_id] for p in common]

