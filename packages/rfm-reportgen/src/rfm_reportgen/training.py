"""Training: the decoder (and its tokenizer) on report text, then the generator on images with reports.
Both go through ``rfm_models.train.train``: resume, checkpoints and FLOP accounting come with it."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset, ShardLoader, StreamingShardDataset, collate
from rfm_data.transforms import cxr_eval_transform, cxr_train_transform
from rfm_models.encoders import train_tokenizer
from rfm_models.encoders.tokenizer import TextTokenizer
from rfm_models.train import (
    BudgetConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainResult,
    train,
)
from rfm_reportgen.config import GeneratorConfig, Target
from rfm_reportgen.data import RowLoader, read_report_corpus, target_ids, text_rows
from rfm_reportgen.export import build_generator, save_generator
from rfm_reportgen.model import decoders, special_ids

__all__ = ["DecoderLM", "GeneratorTrainConfig", "PretrainConfig", "loss_summary", "pretrain_decoder", "save_decoder",
           "train_generator", "with_decoder"]


@dataclass
class PretrainConfig:
    """Decoder + tokenizer pretraining on report text (causal LM).

    Attributes:
        corpus: JSONL report corpus (e.g. the IU reports).
        output_dir: written: ``decoder/`` (transformers directory + tokenizer), ``train/`` (checkpoints, logs).
        target: section(s) to learn; use the generator's target.
        decoder: ``decoders`` registry name built from a GPT-2 config (``test_gpt2``, ``gpt2_tiny``, ``gpt2_small``).
        vocab_size: WordPiece vocabulary trained on the corpus.
        max_length: tokens per text during pretraining.
        batch_size, max_steps, max_minutes, lr, warmup_steps, seed: optimisation (first budget reached stops).
    """

    corpus: str
    output_dir: str
    target: Target = Target.FINDINGS
    decoder: str = "gpt2_small"
    vocab_size: int = 4000
    max_length: int = 128
    batch_size: int = 32
    max_steps: int = 500
    max_minutes: float | None = None
    lr: float = 1e-3
    warmup_steps: int = 20
    seed: int = 0


class DecoderLM(nn.Module):
    """A causal LM on report text under the trainer's contract (``batch["text"]`` → ``{"loss"}``)."""

    def __init__(self, decoder: nn.Module, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.decoder, self.tokenizer = decoder, tokenizer

    def forward(self, batch: Mapping[str, Any], keep: Tensor | None = None) -> dict[str, Tensor]:
        tok = self.tokenizer(batch["text"])
        device = next(self.decoder.parameters()).device
        ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)
        labels = ids.masked_fill(mask == 0, -100)
        return {"loss": self.decoder(input_ids=ids, attention_mask=mask, labels=labels).loss}


def _train_config(output_dir: str, max_steps: int, max_minutes: float | None, lr: float, warmup: int,
                  seed: int) -> TrainConfig:
    hours = max_minutes / 60 if max_minutes else None
    return TrainConfig(output_dir=output_dir, optimizer=OptimizerConfig(lr=lr, weight_decay=0.05),
                       schedule=ScheduleConfig(warmup_steps=warmup, total_steps=max_steps),
                       budget=BudgetConfig(max_steps=max_steps, max_hours=hours),
                       checkpoint=CheckpointConfig(every_steps=max(50, max_steps // 4)), seed=seed, log_every=5,
                       progress=True, tensorboard=False)


def save_decoder(decoder: Any, tokenizer: TextTokenizer, directory: str) -> None:
    """transformers ``save_pretrained`` (safetensors) to a local staging directory, then copied to any URL."""
    with tempfile.TemporaryDirectory() as tmp:
        decoder.save_pretrained(tmp, safe_serialization=True)
        for path in sorted(Path(tmp).iterdir()):
            io.write_bytes(io.join(directory, path.name), path.read_bytes())
    tokenizer.save(directory)


def pretrain_decoder(cfg: PretrainConfig) -> tuple[str, TrainResult]:
    """Train a tokenizer and a GPT-2-style decoder on the ``cfg.target`` texts of ``cfg.corpus``.

    Returns:
        The decoder directory (``GeneratorConfig(decoder="local", decoder_path=...)``) and the trainer result.
    """
    texts = read_report_corpus(cfg.corpus, Target(cfg.target))
    tokenizer = train_tokenizer(texts, vocab_size=cfg.vocab_size, max_length=cfg.max_length)
    torch.manual_seed(cfg.seed)
    decoder = decoders.create(cfg.decoder, vocab_size=tokenizer.vocab_size, ids=special_ids(tokenizer))
    loader = RowLoader(text_rows(texts), batch_size=min(cfg.batch_size, len(texts)), seed=cfg.seed)
    result = train(_train_config(io.join(cfg.output_dir, "train"), cfg.max_steps, cfg.max_minutes, cfg.lr,
                                 cfg.warmup_steps, cfg.seed), DecoderLM(decoder, tokenizer), loader)
    out = io.join(cfg.output_dir, "decoder")
    save_decoder(decoder, tokenizer, out)
    return out, result


@dataclass
class GeneratorTrainConfig:
    """Image-conditioned training of a report generator on an rfm-data dataset.

    Attributes:
        dataset: rfm-data dataset URL (images with reports).
        output_dir: written: ``model/`` (the generator), ``train/`` (checkpoints, logs).
        generator: the architecture and target.
        split: training split.
        batch_size, max_steps, max_minutes, lr, warmup_steps, seed, num_workers: optimisation and loading.
        cache_features: with a frozen encoder, encode every image once (no augmentation) and train on the
            cached tokens.
    """

    dataset: str
    output_dir: str
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    split: str | None = "train"
    batch_size: int = 16
    max_steps: int = 300
    max_minutes: float | None = None
    lr: float = 3e-4
    warmup_steps: int = 10
    seed: int = 0
    num_workers: int = 0
    cache_features: bool = True


@torch.no_grad()
def cached_token_rows(model: Any, dataset: str, split: str | None, ids: set[str],
                      batch_size: int = 32) -> list[dict[str, Any]]:
    """Image tokens of a *frozen* encoder, computed once (evaluation transform, no augmentation): training
    then costs only the projector and the decoder, about half of a CPU step at 96 px with a ResNet-18."""
    ds = ShardDataset(dataset, transform=cxr_eval_transform(model.config.image_size), split=split, ids=ids)
    rows = []
    for start in tqdm(range(0, len(ds), batch_size), desc="encode images", unit="batch"):
        batch = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        tokens = model.image_tokens(batch["image"])
        rows += [{"image_tokens": tokens[k], "findings": batch["findings"][k], "impression": batch["impression"][k],
                  "sample_id": batch["sample_id"][k]} for k in range(tokens.shape[0])]
    return rows


def train_generator(cfg: GeneratorTrainConfig) -> tuple[str, TrainResult]:
    """Train on the samples of ``cfg.split`` that have a ``cfg.generator.target`` text; save to
    ``output_dir/model``. Run it again with the same config to resume from the last checkpoint.

    Returns:
        The saved generator directory and the trainer result.
    """
    gen = cfg.generator
    ids = target_ids(cfg.dataset, gen.target, cfg.split)
    if len(ids) < cfg.batch_size:
        raise ConfigError(f"only {len(ids)} samples have a {gen.target.value!r} text; lower batch_size "
                          f"({cfg.batch_size}) or use more data")
    model = build_generator(gen, seed=cfg.seed)
    loader: Any
    if gen.freeze_encoder and cfg.cache_features:
        loader = RowLoader(cached_token_rows(model, cfg.dataset, cfg.split, ids), cfg.batch_size, seed=cfg.seed)
    else:
        stream = StreamingShardDataset(cfg.dataset, transform=cxr_train_transform(model.config.image_size),
                                       seed=cfg.seed, split=cfg.split, ids=ids)
        loader = ShardLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.num_workers, drop_last=True)
    steps = cfg.max_steps
    result = train(_train_config(io.join(cfg.output_dir, "train"), steps, cfg.max_minutes, cfg.lr,
                                 min(cfg.warmup_steps, max(1, steps // 10)), cfg.seed), model, loader)
    out = io.join(cfg.output_dir, "model")
    save_generator(model, out)
    return out, result


def loss_summary(result: TrainResult) -> dict[str, Any]:
    """The trainer result as JSON-able numbers."""
    last = result.last_loss
    return {"steps": result.step, "epochs": result.epoch, "stop_reason": result.stop_reason,
            "last_loss": None if math.isnan(last) else last, "flops": result.counters.flops,
            "samples": result.counters.samples, "wall_s": result.counters.wall_s}


def with_decoder(config: GeneratorConfig, decoder_dir: str) -> GeneratorConfig:
    """``config`` using a pretrained decoder directory (and its tokenizer)."""
    return replace(config, decoder="local", decoder_path=decoder_dir, tokenizer_path=decoder_dir)
