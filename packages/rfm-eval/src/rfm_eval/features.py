"""Features extracted once per (model hash, dataset fingerprint, split, image size) and reused by every task.

Two arrays per sample: ``features`` (the image encoder's pooled output, what probes, kNN and fine-tuning
start from; any model format) and ``image_emb`` (the L2-normalised projected embedding of vision-language
models, what zero-shot and retrieval compare with text). Layout of one cache entry (any fsspec URL)::

    CACHE/<model_hash[:16]>/<dataset_fp[:16]>-<split>-<size>/samples.json        ids, patients, labels, reports
    CACHE/<model_hash[:16]>/<dataset_fp[:16]>-<split>-<size>/features.safetensors  written last (= complete)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset, collate
from rfm_data.transforms import cxr_eval_transform
from rfm_eval.handle import ModelHandle, ModelKind
from rfm_models.objectives.base import unit

__all__ = ["FeatureSet", "FeatureStore", "dataset_fingerprint", "split_size"]


@dataclass
class FeatureSet:
    """The features of one split, row-aligned with its sample metadata.

    Attributes:
        sample_ids: sample id per row.
        patient_ids: patient id per row (the bootstrap's resampling unit; the sample id when unknown).
        labels: sparse label map per row.
        reports: report text per row ("" when none).
        features: ``(n, out_dim)`` float32 image-encoder features.
        image_emb: ``(n, D)`` float32 normalised projected embeddings (vision-language models), else None.
    """

    sample_ids: list[str]
    patient_ids: list[str]
    labels: list[dict[str, int]]
    reports: list[str]
    features: np.ndarray
    image_emb: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)


def dataset_fingerprint(dataset: str) -> str:
    """sha256 of the dataset's URL-independent description (``dataset.json``: shard names and row counts)."""
    url = io.join(dataset, "dataset.json")
    if not io.exists(url):
        raise ConfigError(f"{dataset} is not an rfm shard dataset (no dataset.json): ingest it with "
                          "`rfm-data ingest SOURCE DEST` or pass --benchmark NAME --data-root DIR")
    return hashlib.sha256(io.read_text(url).encode()).hexdigest()


def split_size(dataset: str, split: str) -> int:
    """Number of samples of ``split`` in ``dataset`` (0 for an empty or unknown split)."""
    dataset_fingerprint(dataset)  # a missing dataset is an error, not an empty split
    try:
        return len(ShardDataset(dataset, split=split))
    except ConfigError as err:
        if "no samples" in str(err):
            return 0
        raise


def _metadata(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {"sample_ids": [str(it["sample_id"]) for it in items],
            "patient_ids": [str(it.get("patient_id") or it["sample_id"]) for it in items],
            "labels": [{str(k): int(v) for k, v in dict(it.get("labels") or {}).items()} for it in items],
            "reports": [str(it.get("report") or "").strip() for it in items]}


@torch.inference_mode()
def _extract(model: ModelHandle, dataset: str, split: str, batch_size: int, progress: bool
             ) -> tuple[dict[str, list[Any]], dict[str, np.ndarray]]:
    if split_size(dataset, split) == 0:
        raise ConfigError(f"split {split!r} of {dataset} is empty: choose another split (train / val / test)")
    ds = ShardDataset(dataset, transform=cxr_eval_transform(model.image_size), split=split)
    loader: DataLoader[Any] = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    vl = model.vision_language() if model.kind == ModelKind.VISION_LANGUAGE else None
    encoder = vl.image_encoder if vl is not None else model.image_encoder()
    meta: dict[str, list[Any]] = {"sample_ids": [], "patient_ids": [], "labels": [], "reports": []}
    feats, embs = [], []
    for batch in tqdm(loader, desc=f"features {split}", disable=not progress, leave=False):
        x = batch["image"].to(model.device)
        f = encoder(x)
        feats.append(f.float().cpu().numpy())
        if vl is not None:
            embs.append(unit(vl.image_projection(f)).float().cpu().numpy())
        rows = [{k: batch[k][i] for k in batch if k != "image"} for i in range(x.shape[0])]
        for key, values in _metadata(rows).items():
            meta[key].extend(values)
    arrays = {"features": np.concatenate(feats)}
    if embs:
        arrays["image_emb"] = np.concatenate(embs)
    return meta, arrays


@dataclass
class FeatureStore:
    """Cached feature extraction for one model and dataset (see the module docstring).

    Args:
        model: the opened model.
        dataset: shard dataset URL.
        cache_dir: cache root URL; None keeps features in memory only.
        batch_size: images per forward pass.
        progress: show a tqdm bar while extracting.
        reuse: keep extracted splits in memory and on disk; False re-extracts on every call (benchmarks).
    """

    model: ModelHandle
    dataset: str
    cache_dir: str | None = None
    batch_size: int = 64
    progress: bool = True
    reuse: bool = True
    extract_seconds: float = 0.0
    extractions: int = 0
    _memo: dict[str, FeatureSet] = field(default_factory=dict, repr=False)

    def entry(self, split: str) -> str | None:
        """Cache folder URL of ``split`` (None without a cache dir)."""
        if self.cache_dir is None:
            return None
        key = f"{dataset_fingerprint(self.dataset)[:16]}-{split}-{self.model.image_size}"
        return io.join(self.cache_dir, self.model.model_hash[:16], key)

    def get(self, split: str) -> FeatureSet:
        """Features of ``split``: from memory, else the cache, else extracted (and cached).

        Raises:
            ConfigError: the split is empty or the dataset is not a shard dataset.
        """
        if self.reuse and split in self._memo:
            return self._memo[split]
        entry = self.entry(split) if self.reuse else None
        if entry is not None and io.exists(io.join(entry, "features.safetensors")):
            result = self._load(entry)
        else:
            start = time.perf_counter()
            meta, arrays = _extract(self.model, self.dataset, split, self.batch_size, self.progress)
            self.extract_seconds += time.perf_counter() - start
            self.extractions += 1
            if entry is not None:
                self._save(entry, meta, arrays)
            result = FeatureSet(**meta, features=arrays["features"], image_emb=arrays.get("image_emb"))
        if self.reuse:
            self._memo[split] = result
        return result

    @staticmethod
    def _save(entry: str, meta: dict[str, list[Any]], arrays: dict[str, np.ndarray]) -> None:
        io.write_text(io.join(entry, "samples.json"), json.dumps(meta))
        with io.atomic_write(io.join(entry, "features.safetensors")) as f:
            f.write(save_safetensors({k: np.ascontiguousarray(v) for k, v in arrays.items()}))

    @staticmethod
    def _load(entry: str) -> FeatureSet:
        meta = json.loads(io.read_text(io.join(entry, "samples.json")))
        arrays = load_safetensors(io.read_bytes(io.join(entry, "features.safetensors")))
        return FeatureSet(**meta, features=arrays["features"], image_emb=arrays.get("image_emb"))
