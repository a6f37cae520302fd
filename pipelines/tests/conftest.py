"""Fixtures: the bundled sample ingested for real, and an embedding store aligned with its sample ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfm_curation.embeddings import write_embeddings
from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.ingest import ingest
from rfm_data.manifest import read_manifest

# The same key in the fixture and in the components' environment gives the same pseudonymous sample ids,
# which is what lets an embedding store made from one ingest serve the pipeline's own ingest.
TEST_KEY = "rfm-pipelines-test-key-not-secret"


@pytest.fixture(autouse=True)
def deid_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Components read the key from RFM_DEID_KEY (a secret on a cluster); kfp.local subprocesses inherit it."""
    monkeypatch.setenv("RFM_DEID_KEY", TEST_KEY)
    return TEST_KEY


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample, ingested with rfm_data (63 accepted, 2 quarantined)."""
    dest = tmp_path_factory.mktemp("sample") / "dataset"
    cfg = IngestConfig(shard_size=32, workers=1, deid=DeidConfig(key=TEST_KEY))
    ingest("sample", str(dest), cfg, progress=False)
    return dest


@pytest.fixture(scope="session")
def sample_embeddings(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``joint`` embedding store for the accepted sample images: 4 well separated clusters plus noise.

    Curation is tested here as a pipeline step, not for the quality of its choices, so synthetic vectors
    (seeded) suffice; they only have to be aligned with the real sample ids.
    """
    table = read_manifest(str(sample_dataset / "manifest.parquet"))
    ids = [r["sample_id"] for r in table.select(["sample_id", "status"]).to_pylist() if r["status"] == "accepted"]
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 32)) * 5
    vectors = centres[np.arange(len(ids)) % 4] + rng.standard_normal((len(ids), 32))
    store = tmp_path_factory.mktemp("embeddings") / "store"
    write_embeddings(str(store), ids, {"joint": vectors.astype(np.float32)})
    return store


@pytest.fixture(scope="session")
def sample_model(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP model (test_vit + test_bert, 32 px) trained for a few steps on the sample: its export folder."""
    from rfm_models.train.cli import run

    out = tmp_path_factory.mktemp("sample-model")
    run(["+experiment=test_clip_cxr", f"data.url={sample_dataset}", "data.split=null", f"train.output_dir={out}",
         "train.budget.max_epochs=null", "train.budget.max_steps=4", "train.progress=false",
         "train.tensorboard=false"])
    return out / "model"
