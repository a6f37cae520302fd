"""``rfm-reportgen``: pretrain-decoder | train | generate | retrieve | score. Each subcommand parses its
arguments and calls one library function; user errors exit with status 2 and a message."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from rfm_data.errors import ConfigError
from rfm_reportgen.config import DecodeStrategy, GenerationConfig, GeneratorConfig, Target
from rfm_reportgen.model import decoders, projectors

__all__ = ["main"]


def _split(name: str) -> str | None:
    """``all`` (or empty) selects every split."""
    return None if name in ("", "all") else name


def _pretrain(args: argparse.Namespace) -> int:
    from rfm_reportgen.training import PretrainConfig, loss_summary, pretrain_decoder

    out, result = pretrain_decoder(PretrainConfig(
        corpus=args.corpus, output_dir=args.out, target=Target(args.target), decoder=args.decoder,
        vocab_size=args.vocab_size, batch_size=args.batch_size, max_steps=args.steps, max_minutes=args.minutes,
        lr=args.lr, seed=args.seed))
    print(json.dumps({"decoder": out, **loss_summary(result)}, indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    from rfm_reportgen.training import GeneratorTrainConfig, loss_summary, train_generator

    gen = GeneratorConfig(image_encoder=args.image_encoder, image_size=args.image_size,
                          encoder_weights=args.encoder_weights, freeze_encoder=args.freeze_encoder,
                          projector=args.projector, num_query_tokens=args.query_tokens,
                          decoder="local" if args.decoder_dir else args.decoder, decoder_path=args.decoder_dir,
                          tokenizer_path=args.tokenizer or args.decoder_dir, target=Target(args.target),
                          max_target_tokens=args.max_target_tokens)
    out, result = train_generator(GeneratorTrainConfig(
        dataset=args.dataset, output_dir=args.out, generator=gen, split=_split(args.split), batch_size=args.batch_size,
        max_steps=args.steps, max_minutes=args.minutes, lr=args.lr, seed=args.seed))
    print(json.dumps({"model": out, **loss_summary(result)}, indent=2))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from rfm_reportgen.predict import generate_reports, write_predictions

    cfg = GenerationConfig(strategy=DecodeStrategy(args.strategy), max_new_tokens=args.max_new_tokens,
                           num_beams=args.num_beams, repetition_penalty=args.repetition_penalty,
                           use_cache=not args.no_cache, seed=args.seed)
    preds = generate_reports(args.model, args.dataset, split=_split(args.split), config=cfg, batch_size=args.batch_size)
    write_predictions(preds, args.out)
    print(f"{len(preds)} reports → {args.out}")
    return 0


def _retrieve(args: argparse.Namespace) -> int:
    from rfm_reportgen.predict import retrieve_reports, write_predictions

    preds = retrieve_reports(args.clip_model, args.dataset, Target(args.target), split=_split(args.split),
                             train_split=args.train_split)
    write_predictions(preds, args.out)
    print(f"{len(preds)} reports → {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from rfm_reportgen.predict import read_predictions
    from rfm_reportgen.report import evaluate, write_evaluation
    from rfm_reportgen.scoring import ScoreConfig

    evaluation = evaluate([read_predictions(p) for p in args.predictions],
                          ScoreConfig(n_boot=args.n_boot, seed=args.seed, meteor=not args.no_meteor))
    files = write_evaluation(evaluation, args.out)
    print(evaluation.to_markdown())
    print(json.dumps(files, indent=2))
    return 0


def _common(p: argparse.ArgumentParser, fn: Callable[[argparse.Namespace], int]) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=fn)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfm-reportgen", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    targets = [t.value for t in Target]
    p = sub.add_parser("pretrain-decoder", help="tokenizer + causal-LM decoder on report text (JSONL)")
    p.add_argument("corpus"), p.add_argument("--out", required=True)
    p.add_argument("--target", choices=targets, default="findings")
    p.add_argument("--decoder", choices=[n for n in decoders.names() if n != "local"], default="gpt2_small")
    p.add_argument("--vocab-size", type=int, default=4000), p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=500), p.add_argument("--minutes", type=float)
    p.add_argument("--lr", type=float, default=1e-3)
    _common(p, _pretrain)
    p = sub.add_parser("train", help="train a generator on an rfm-data dataset")
    p.add_argument("dataset"), p.add_argument("--out", required=True)
    p.add_argument("--decoder-dir", help="pretrained decoder directory (from pretrain-decoder)")
    p.add_argument("--decoder", choices=decoders.names(), default="gpt2_small")
    p.add_argument("--tokenizer", help="tokenizer directory (default: --decoder-dir)")
    p.add_argument("--image-encoder", default="resnet18"), p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--encoder-weights"), p.add_argument("--freeze-encoder", action="store_true")
    p.add_argument("--projector", choices=projectors.names(), default="mlp")
    p.add_argument("--query-tokens", type=int, default=16)
    p.add_argument("--target", choices=targets, default="findings")
    p.add_argument("--max-target-tokens", type=int, default=128)
    p.add_argument("--split", default="train", help="split to train on ('all' for every split)")
    p.add_argument("--batch-size", type=int, default=16), p.add_argument("--steps", type=int, default=300)
    p.add_argument("--minutes", type=float), p.add_argument("--lr", type=float, default=3e-4)
    _common(p, _train)
    p = sub.add_parser("generate", help="generate reports for a split → predictions.parquet")
    p.add_argument("model"), p.add_argument("dataset"), p.add_argument("--out", required=True)
    p.add_argument("--split", default="test"), p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--strategy", choices=[s.value for s in DecodeStrategy], default="beam")
    p.add_argument("--num-beams", type=int, default=3), p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repetition-penalty", type=float, default=1.2)
    p.add_argument("--no-cache", action="store_true", help="decode without the KV cache")
    _common(p, _generate)
    p = sub.add_parser("retrieve", help="retrieval baseline: nearest training report by CLIP similarity")
    p.add_argument("clip_model"), p.add_argument("dataset"), p.add_argument("--out", required=True)
    p.add_argument("--target", choices=targets, default="findings")
    p.add_argument("--split", default="test"), p.add_argument("--train-split", default="train")
    _common(p, _retrieve)
    p = sub.add_parser("score", help="score prediction files (the first is the baseline) with CIs")
    p.add_argument("predictions", nargs="+"), p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=1000), p.add_argument("--no-meteor", action="store_true")
    _common(p, _score)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (2 for a user error, with its message on stderr)."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.fn(args)
    except (ConfigError, KeyError, FileNotFoundError) as err:
        print(f"rfm-reportgen {args.command}: error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
