"""Image, text and joint embeddings of a shard dataset, written to rfm-curation's embedding store.

Kinds written: ``image`` and ``text`` (L2-normalised, ``embed_dim``) and ``joint`` = the normalised
concatenation image ⊕ text (``2 x embed_dim``), the space CheXficient clusters in. Needs the ``curation``
extra (``pip install "rfm-models[curation]"``); rfm_curation is imported only here, only when called.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset, collate
from rfm_data.transforms import cxr_eval_transform
from rfm_models.export import load_pretrained
from rfm_models.model import VisionLanguageModel
from rfm_models.objectives.base import unit

KINDS = ("image", "text", "joint")

__all__ = ["KINDS", "EmbedResult", "embed", "embed_model", "main"]


@dataclass(frozen=True)
class EmbedResult:
    """What :func:`embed` wrote: the store URL, its row count and the dimension of each kind."""

    store: str
    count: int
    dims: dict[str, int]


def _embedding_writer() -> Any:
    try:
        from rfm_curation.embeddings import EmbeddingWriter
    except ImportError as err:
        raise ConfigError('embed writes an rfm-curation embedding store: pip install "rfm-models[curation]"') from err
    return EmbeddingWriter


def _batches(model: VisionLanguageModel, loader: DataLoader[Any]) -> Iterator[tuple[list[str], dict[str, Tensor]]]:
    device = model.logit_scale.device
    with torch.inference_mode():
        for batch in loader:
            image = model.encode_image(batch["image"].to(device))
            text = model.encode_text(batch["report"])
            joint = unit(torch.cat([image, text], dim=1))
            yield list(batch["sample_id"]), {"image": image, "text": text, "joint": joint}


def embed_model(model: VisionLanguageModel, dataset: str, store: str, split: str | None = None,
                batch_size: int = 32, num_workers: int = 0) -> EmbedResult:
    """Embed every sample of ``dataset`` (optionally one ``split``) with ``model`` into the store at ``store``.

    Images get the evaluation preprocessing at the model's ``image_size`` (resize, pad to square, normalise).
    """
    writer_cls = _embedding_writer()
    ds = ShardDataset(dataset, transform=cxr_eval_transform(model.config.image_size), split=split)
    loader: DataLoader[Any] = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=collate)
    dim = model.config.embed_dim
    dims = {"image": dim, "text": dim, "joint": 2 * dim}
    model.eval()
    with writer_cls(store, len(ds), dims) as writer:
        for ids, arrays in _batches(model, loader):
            writer.add(ids, {kind: arrays[kind].float().cpu().numpy() for kind in KINDS})
    return EmbedResult(store=store, count=len(ds), dims=dims)


def embed(model_dir: str, dataset: str, store: str, split: str | None = None, batch_size: int = 32,
          num_workers: int = 0, device: str = "cpu") -> EmbedResult:
    """Load the model exported at ``model_dir`` and run :func:`embed_model`.

    Args:
        model_dir: directory written by :func:`rfm_models.export.save_pretrained`.
        dataset: shard dataset URL written by ``rfm-data ingest``.
        store: output embedding store URL (rfm-curation format).
        split: only this split (``train`` / ``val`` / ``test``); None = all samples.
        batch_size: samples per forward pass.
        num_workers: DataLoader workers reading shards.
        device: torch device, e.g. ``cuda``.
    """
    model = load_pretrained(model_dir, device=device)
    return embed_model(model, dataset, store, split=split, batch_size=batch_size, num_workers=num_workers)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfm-embed", description="Embed a shard dataset into an embedding store.")
    parser.add_argument("model", help="exported model directory (save_pretrained)")
    parser.add_argument("dataset", help="shard dataset URL (rfm-data ingest output)")
    parser.add_argument("store", help="output embedding store URL")
    parser.add_argument("--split", default=None, help="only this split")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``rfm-embed MODEL DATASET STORE``: parse, embed, print a one-line summary."""
    args = _parser().parse_args(argv)
    result = embed(args.model, args.dataset, args.store, split=args.split, batch_size=args.batch_size,
                   num_workers=args.num_workers, device=args.device)
    dims = ", ".join(f"{k}={v}" for k, v in result.dims.items())
    print(f"wrote {result.count} embeddings ({dims}) to {result.store}")
    return 0
