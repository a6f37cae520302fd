"""Sample-id subsets (rfm_data.subsets) and the loaders' ``ids=`` filter, on the bundled real sample."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rfm_data.errors import ConfigError
from rfm_data.io import read_parquet
from rfm_data.loader import ShardDataset, ShardLoader, StreamingShardDataset
from rfm_data.subsets import read_sample_ids
from rfm_data.transforms import cxr_eval_transform


def _accepted_ids(dataset: str) -> list[str]:
    manifest = read_parquet(f"{dataset}/manifest.parquet")
    return sorted(i for i, s in zip(manifest.column("sample_id").to_pylist(), manifest.column("status").to_pylist(),
                                    strict=True) if s == "accepted")


def test_every_subset_form_gives_the_same_ids(sample_dataset: str, tmp_path: Path) -> None:
    ids = _accepted_ids(sample_dataset)
    chosen = set(ids[::3])
    (tmp_path / "ids.txt").write_text("# kept ids\n\n" + "\n".join(sorted(chosen)) + "\n")
    flags = pa.table({"sample_id": ids, "kept": [i in chosen for i in ids]})
    (tmp_path / "curation").mkdir()
    pq.write_table(flags, tmp_path / "curation" / "selection.parquet")
    pq.write_table(flags.rename_columns(["sample_id", "curation_kept"]), tmp_path / "manifest.parquet")
    pq.write_table(pa.table({"sample_id": sorted(chosen)}), tmp_path / "plain.parquet")
    for url in ("ids.txt", "curation", "manifest.parquet", "plain.parquet"):
        assert read_sample_ids(str(tmp_path / url)) == chosen, url


def test_streaming_loader_yields_exactly_the_subset(sample_dataset: str) -> None:
    ids = _accepted_ids(sample_dataset)
    chosen = frozenset(ids[1::4])
    ds = StreamingShardDataset(sample_dataset, transform=cxr_eval_transform(32), seed=3, ids=chosen)
    assert len(ds) == len(chosen)
    seen = [sid for batch in ShardLoader(ds, batch_size=4) for sid in batch["sample_id"]]
    assert sorted(seen) == sorted(chosen)
    # Resuming a run with another subset must be refused: the order's fingerprint covers the selection.
    assert ds.index.fingerprint() != StreamingShardDataset(sample_dataset, seed=3).index.fingerprint()


def test_map_style_dataset_combines_split_and_subset(sample_dataset: str) -> None:
    ids = frozenset(_accepted_ids(sample_dataset))
    train = ShardDataset(sample_dataset, split="train")
    train_ids = {train[i]["sample_id"] for i in range(len(train))}
    half = frozenset(sorted(ids)[: len(ids) // 2])
    both = ShardDataset(sample_dataset, split="train", ids=half)
    assert {both[i]["sample_id"] for i in range(len(both))} == train_ids & half


def test_bad_subsets_are_named(sample_dataset: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_sample_ids(str(tmp_path / "missing"))
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "wrong.parquet")
    with pytest.raises(ConfigError, match="sample_id"):
        read_sample_ids(str(tmp_path / "wrong.parquet"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="selects no sample"):
        read_sample_ids(str(tmp_path / "empty.txt"))
    with pytest.raises(ConfigError, match="among the 1 ids of the subset"):
        StreamingShardDataset(sample_dataset, ids=frozenset({"not-a-sample"}))
