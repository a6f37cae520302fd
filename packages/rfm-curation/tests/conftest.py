"""Fixtures: the bundled real sample ingested once per session, with image embeddings from a fixed encoder.

The encoder is deliberately simple and fixed (no trained weights exist yet): each stored CXR is resized to
32 x 32, standardised, and projected to 64-d with a seeded Gaussian matrix. Real pixels, deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rfm_curation.embeddings import write_embeddings
from rfm_data.manifest import read_manifest
from rfm_data.shards import decode_pixels, read_shard


def image_features(dataset: str) -> tuple[list[str], np.ndarray]:
    """(sample ids, 64-d features) of the accepted images of an ingested dataset."""
    rows = [r for r in read_manifest(f"{dataset}/manifest.parquet").to_pylist() if r["status"] == "accepted"]
    proj = np.random.default_rng(0).standard_normal((32 * 32, 64)).astype(np.float32)
    shards: dict[str, dict[str, list[object]]] = {}
    feats = []
    for r in rows:
        shard = shards.setdefault(r["shard"], read_shard(f"{dataset}/{r['shard']}").to_pydict())
        i = r["shard_row"]
        px = decode_pixels(shard["image"][i], shard["height"][i], shard["width"][i], shard["dtype"][i],
                           shard["encoding"][i]).astype(np.float32)
        small = np.asarray(Image.fromarray(px, "F").resize((32, 32)))
        feats.append(((small - small.mean()) / (small.std() + 1e-6)).ravel() @ proj)
    return [r["sample_id"] for r in rows], np.asarray(feats, dtype=np.float32)


@pytest.fixture(scope="session")
def sample_store(sample_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An embedding store (kind ``image``) for the sample's accepted images."""
    ids, feats = image_features(sample_dataset)
    url = str(tmp_path_factory.mktemp("store") / "emb")
    write_embeddings(url, ids, {"image": feats})
    return url


@pytest.fixture(scope="session")
def long_tail() -> tuple[np.ndarray, np.ndarray]:
    """2,000 unit vectors (32-d) from 5 well-separated clusters of sizes 1,200 … 20, and each one's cluster."""
    rng = np.random.default_rng(0)
    sizes = np.array([1200, 500, 200, 80, 20])
    centers = rng.standard_normal((len(sizes), 32)) * 3
    x = np.concatenate([c + rng.standard_normal((s, 32)) for c, s in zip(centers, sizes, strict=True)])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels
