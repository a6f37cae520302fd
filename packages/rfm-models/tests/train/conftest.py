"""Fixtures for the trainer tests: a small sharded dataset of real CXRs with their real clinical notes.

The images and reports come from the COVID-19 chest X-ray collection of the development data (skipped with a
clear reason where ``../shared/data`` is absent), downscaled to 32 px so that every training step takes
milliseconds on a CPU.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rfm_data import io
from rfm_data.config import Encoding
from rfm_data.loader import ShardLoader, StreamingShardDataset
from rfm_data.shards import encode_pixels, shard_name, write_shard
from rfm_data.transforms import create_transform

SIDE = 32
N_SAMPLES = 96


def _rows(shared_data: Path) -> list[dict[str, Any]]:
    root = shared_data / "covid_chestxray_ieee8023"
    with open(root / "metadata.csv", newline="") as f:
        records = [r for r in csv.DictReader(f) if r["report"].strip()][:N_SAMPLES]
    rows = []
    for r in records:
        with Image.open(root / r["image_path"]) as im:
            pixels = np.asarray(im.convert("L").resize((SIDE, SIDE)))
        rows.append({"sample_id": r["image_id"], "patient_id": r["patient_id"], "study_id": r["study_id"],
                     "view": r["view"], "split": "train", "report_text": r["report"], "report_findings": "",
                     "report_impression": "", "labels": {"covid": int(r["label_covid19"] or 0)},
                     "image": encode_pixels(pixels, Encoding.RAW), "height": SIDE, "width": SIDE,
                     "dtype": "uint8", "encoding": Encoding.RAW.value})
    return rows


@pytest.fixture(scope="session")
def cxr_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a 2-shard dataset of 96 real CXRs (32 px) with their reports."""
    url = str(tmp_path_factory.mktemp("train-data") / "cxr")
    rows = _rows(shared_data)
    half = len(rows) // 2
    entries = []
    for k, chunk in enumerate((rows[:half], rows[half:])):
        write_shard(f"{url}/{shard_name(k)}", chunk, Encoding.RAW)
        entries.append({"name": shard_name(k), "rows": len(chunk)})
    io.write_text(f"{url}/dataset.json", json.dumps({"shards": entries, "format": "rfm-shards"}))
    return url


def _make_loader(url: str, batch_size: int = 16, seed: int = 0, drop_last: bool = True) -> ShardLoader:
    """The loader the CLI builds, at test size (padding only: every image is already 32 x 32)."""
    ds = StreamingShardDataset(url, transform=create_transform("cxr_train", size=SIDE), seed=seed,
                               buffer_size=64)
    return ShardLoader(ds, batch_size=batch_size, drop_last=drop_last)


@pytest.fixture(scope="session")
def make_loader() -> Callable[..., ShardLoader]:
    """``make_loader(url, batch_size=16, seed=0, drop_last=True)``: a fresh resumable loader."""
    return _make_loader
