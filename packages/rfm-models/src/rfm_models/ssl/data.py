"""The streaming loader of self-distillation: shards → multi-crop views → stacked batches."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from rfm_data.loader import ShardLoader, StreamingShardDataset, collate
from rfm_models.ssl.config import SelfDistillationConfig
from rfm_models.ssl.multicrop import MultiCropd

__all__ = ["build_ssl_loader"]


def build_ssl_loader(url: str, config: SelfDistillationConfig, batch_size: int, seed: int = 0,
                     split: str | None = "train", num_workers: int = 0, buffer_size: int = 512,
                     drop_last: bool = True, ids: AbstractSet[str] | None = None) -> ShardLoader:
    """A resumable loader over the sharded dataset at ``url`` yielding ``global_crops`` / ``local_crops``.

    Args:
        url: a dataset written by ``rfm-data ingest`` (any fsspec URL).
        config: the model's configuration (global crop size = ``image_size``, the rest from ``crops``).
        batch_size: images per batch (each gives ``n_global + n_local`` views).
        seed: augmentation and shuffling seed (re-seeded per item: resumes exactly, any worker count).
        split: the split to read (None = all).
        num_workers: DataLoader workers.
        buffer_size: shuffle buffer of the streaming dataset.
        drop_last: drop the last incomplete batch (DDP needs equal steps on every rank).
        ids: train only on these sample ids (a curated subset, ``rfm_data.subsets.read_sample_ids``).
    """
    transform = MultiCropd(config.image_size, config.crops, seed=seed)
    dataset = StreamingShardDataset(url, transform=transform, seed=seed, split=split, buffer_size=buffer_size,
                                    drop_remainder=True, ids=ids)
    return ShardLoader(dataset, batch_size=batch_size, num_workers=num_workers, drop_last=drop_last,
                       collate_fn=collate)
