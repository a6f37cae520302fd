"""A real report-generation run on CPU: decoder pretrained on the IU reports, generator trained on the COVID
images with clinical notes, compared with a CLIP retrieval baseline on the test split.

    .venv/bin/python tools/experiments/reportgen_cpu_run.py --workdir /tmp/rfm-reportgen-cpu

1. ingests ``covid_chestxray_ieee8023`` from ``../shared/data`` with the rfm-data adapter (cached in the workdir);
2. trains a WordPiece tokenizer and a GPT-2-style decoder (``gpt2_tiny``: 2 layers, 128-d) on the *findings* of
   the 3,365 IU reports (causal LM) through ``rfm_models.train.train``;
3. trains the generator (the CLIP model's ResNet-18 image encoder, frozen, its tokens cached once → MLP projector
   → that decoder) with teacher forcing on the findings (the notes, cut at 64 tokens) of the covid train split;
4. generates for the test split (beam search), retrieves the nearest training note with the CLIP model
   (``tools/experiments/clip_cpu_run.py`` trains it on the same train split), and scores both with every
   metric and patient-level bootstrap CIs (paired differences).

Writes ``results/reportgen_cpu_run.json`` / ``.md`` / ``.png`` beside this script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.ingest import ingest
from rfm_reportgen.config import DecodeStrategy, GenerationConfig, GeneratorConfig, Target
from rfm_reportgen.predict import generate_reports, retrieve_reports, write_predictions
from rfm_reportgen.report import evaluate, write_evaluation
from rfm_reportgen.scoring import ScoreConfig
from rfm_reportgen.training import (
    GeneratorTrainConfig,
    PretrainConfig,
    loss_summary,
    pretrain_decoder,
    train_generator,
    with_decoder,
)

RESULTS = Path(__file__).parent / "results"
SOURCE = "covid_chestxray_ieee8023"


@dataclass
class RunArgs:
    data_root: str
    workdir: str
    clip_model: str
    pretrain_steps: int
    pretrain_minutes: float
    train_steps: int
    train_minutes: float
    image_size: int
    max_target_tokens: int
    n_boot: int
    seed: int
    fresh: bool


def _parse(argv: list[str] | None) -> RunArgs:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--workdir", default="/tmp/rfm-reportgen-cpu")
    p.add_argument("--clip-model", default="/tmp/rfm-clip-cpu/run/model",
                   help="CLIP model directory of tools/experiments/clip_cpu_run.py (retrieval baseline, encoder)")
    p.add_argument("--pretrain-steps", type=int, default=60)
    p.add_argument("--pretrain-minutes", type=float, default=2.0)
    p.add_argument("--train-steps", type=int, default=90)
    p.add_argument("--train-minutes", type=float, default=5.0)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--max-target-tokens", type=int, default=64, help="notes are cut to this many tokens")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete earlier training outputs in the workdir first")
    return RunArgs(**vars(p.parse_args(argv)))


def ingest_covid(data_root: str, workdir: Path) -> str:
    dest = workdir / SOURCE
    if not (dest / "dataset.json").exists():
        ingest(str(Path(data_root) / SOURCE), str(dest), IngestConfig(deid=DeidConfig(key="reportgen-cpu-run")),
               dataset=SOURCE, progress=False)
    return str(dest)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    work = Path(args.workdir)
    if args.fresh:
        for name in ("pretrain", "generator"):
            shutil.rmtree(work / name, ignore_errors=True)
    torch.set_num_threads(2)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dataset = ingest_covid(args.data_root, work)
    timings["ingest_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    corpus = str(Path(args.data_root) / "iu_xray_reports" / "reports.jsonl")
    decoder_dir, pre = pretrain_decoder(PretrainConfig(
        corpus=corpus, output_dir=str(work / "pretrain"), target=Target.FINDINGS, decoder="gpt2_tiny",
        vocab_size=2000, max_length=64, batch_size=16, max_steps=args.pretrain_steps,
        max_minutes=args.pretrain_minutes, lr=1e-3, seed=args.seed))
    timings["pretrain_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    generator = with_decoder(GeneratorConfig(
        image_encoder="resnet18", image_size=args.image_size, encoder_weights=args.clip_model, freeze_encoder=True,
        projector="mlp", target=Target.FINDINGS, max_target_tokens=args.max_target_tokens), decoder_dir)
    model_dir, fit = train_generator(GeneratorTrainConfig(
        dataset=dataset, output_dir=str(work / "generator"), generator=generator, split="train", batch_size=16,
        max_steps=args.train_steps, max_minutes=args.train_minutes, lr=1e-3, seed=args.seed))
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gen_cfg = GenerationConfig(strategy=DecodeStrategy.BEAM, num_beams=3, max_new_tokens=args.max_target_tokens,
                               repetition_penalty=1.2, no_repeat_ngram_size=3)
    generated = generate_reports(model_dir, dataset, split="test", config=gen_cfg)
    timings["generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    retrieved = retrieve_reports(args.clip_model, dataset, Target.FINDINGS, split="test", train_split="train")
    timings["retrieve_s"] = time.perf_counter() - t0
    write_predictions(generated, str(work / "predictions-generator.parquet"))
    write_predictions(retrieved, str(work / "predictions-retrieval.parquet"))

    t0 = time.perf_counter()
    evaluation = evaluate([retrieved, generated], ScoreConfig(n_boot=args.n_boot, seed=args.seed))
    timings["score_s"] = time.perf_counter() - t0
    files = write_evaluation(evaluation, str(work / "eval"))
    _publish(args, evaluation.to_dict(), files, timings, loss_summary(pre), loss_summary(fit), gen_cfg,
             generated[:5])
    print(evaluation.to_markdown())
    print(json.dumps(timings, indent=2))
    return 0


def _publish(args: RunArgs, scores: dict[str, Any], files: dict[str, str], timings: dict[str, float],
             pre: dict[str, Any], fit: dict[str, Any], gen_cfg: GenerationConfig, examples: list[Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"args": asdict(args), "timings": timings, "pretrain": pre, "train": fit,
           "generation": {k: getattr(v, "value", v) for k, v in asdict(gen_cfg).items()},
           "examples": [asdict(e) for e in examples], **scores}
    (RESULTS / "reportgen_cpu_run.json").write_text(json.dumps(out, indent=2, default=str))
    shutil.copyfile(files["markdown"], RESULTS / "reportgen_cpu_run.md")
    shutil.copyfile(files["plot"], RESULTS / "reportgen_cpu_run.png")


if __name__ == "__main__":
    raise SystemExit(main())
