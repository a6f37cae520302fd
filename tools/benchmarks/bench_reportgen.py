"""Report-generation throughput on CPU: the tiny decoder with and without the KV cache, and peak memory.

Generator: ResNet-18 (96 px, 9 image tokens) → MLP projector → ``gpt2_tiny`` (2 layers, 128-d, vocabulary
2,000 trained on the real IU findings), untrained weights (speed does not depend on them; every report runs to
``max_new_tokens`` because the decoder never prefers [SEP]: the minimum length is forced). Input: the bundled
sample's real CXRs. Variants, side by side: greedy and beam search (3 beams), each with ``use_cache`` on and off
(transformers' ``generate``). Each variant runs in its own fresh process so that its peak RSS is its own;
reports/s is the median over rounds of one batch. One torch thread by default: on a machine shared with other
jobs, two OpenMP threads per process were 30x slower (busy-waiting threads starved of a core).

    .venv/bin/python tools/benchmarks/bench_reportgen.py --out tools/benchmarks/results/reportgen.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from benchutil import cpu_model  # sibling module: benchmarks run as scripts

VARIANTS = [("greedy", True), ("greedy", False), ("beam", True), ("beam", False)]


def _prepare(work: Path, corpus: str) -> tuple[str, str]:
    from rfm_data.config import DeidConfig, IngestConfig
    from rfm_data.ingest import ingest
    from rfm_models.encoders import train_tokenizer
    from rfm_reportgen.config import Target
    from rfm_reportgen.data import read_report_corpus

    dataset = str(work / "sample")
    ingest("sample", dataset, IngestConfig(workers=1, deid=DeidConfig(key="bench")), progress=False)
    train_tokenizer(read_report_corpus(corpus, Target.FINDINGS), vocab_size=2000, max_length=128).save(
        str(work / "tok"))
    return dataset, str(work / "tok")


def _child(args: dict[str, Any], queue: Any) -> None:
    torch.set_num_threads(args["threads"])
    from rfm_data.loader import ShardDataset, collate
    from rfm_data.transforms import cxr_eval_transform
    from rfm_reportgen.config import GenerationConfig, GeneratorConfig
    from rfm_reportgen.export import build_generator

    model = build_generator(GeneratorConfig(image_encoder="resnet18", image_size=96, decoder=args["decoder"],
                                            tokenizer_path=args["tokenizer"])).eval()
    # Never end early: every variant then generates exactly max_new_tokens per report.
    model.decoder.generation_config.min_new_tokens = args["tokens"]
    ds = ShardDataset(args["dataset"], transform=cxr_eval_transform(96))
    images = collate([ds[i] for i in range(args["batch"])])["image"]
    cfg = GenerationConfig(strategy=args["strategy"], num_beams=3, max_new_tokens=args["tokens"],
                           use_cache=args["cache"], repetition_penalty=1.0, no_repeat_ngram_size=0)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.generate_ids(images[:1], cfg)  # warm-up
    times, cpu = [], []
    with torch.no_grad():
        for _ in range(args["rounds"]):
            w, c = time.perf_counter(), time.process_time()
            ids = model.generate_ids(images, cfg)
            times.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    queue.put({"strategy": args["strategy"], "use_cache": args["cache"], "median_s": statistics.median(times),
               "cpu_s": statistics.median(cpu), "generated_tokens": int(ids.shape[1]),
               "reports_per_s": args["batch"] / statistics.median(times),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "peak_rss_over_loaded_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_loaded) / 1024})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" /
                                           "iu_xray_reports" / "reports.jsonl"))
    p.add_argument("--batch", type=int, default=8), p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3), p.add_argument("--threads", type=int, default=1)
    p.add_argument("--decoder", default="gpt2_tiny", help="decoders registry name (gpt2_small: 4 x 256-d)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "reportgen.json"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset, tok = _prepare(Path(tmp), args.corpus)
        ctx = mp.get_context("spawn")
        for strategy, cache in VARIANTS:
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=({"strategy": strategy, "cache": cache, "dataset": dataset,
                                                     "tokenizer": tok, "batch": args.batch, "tokens": args.tokens,
                                                     "rounds": args.rounds, "threads": args.threads,
                                                     "decoder": args.decoder}, queue))
            proc.start()
            rows.append(queue.get())
            proc.join()
    by = {(r["strategy"], r["use_cache"]): r for r in rows}
    print(f"{'decoding':<8} {'KV cache':>8} {'reports/s':>10} {'s/batch':>8} {'tokens':>7} {'peak RSS MB':>12}"
          f" {'gen. +MB':>9}")
    for r in rows:
        print(f"{r['strategy']:<8} {'on' if r['use_cache'] else 'off':>8} {r['reports_per_s']:>10.2f} "
              f"{r['median_s']:>8.2f} {r['generated_tokens']:>7} {r['peak_rss_mb']:>12.0f} "
              f"{r['peak_rss_over_loaded_mb']:>9.0f}")
    ratios = {s: by[(s, True)]["reports_per_s"] / by[(s, False)]["reports_per_s"] for s in ("greedy", "beam")}
    print("KV cache speed-up: " + ", ".join(f"{s} x{v:.2f}" for s, v in ratios.items()))
    out = {"benchmark": "reportgen_generation", "cpu": cpu_model(), "python": platform.python_version(),
           "torch": torch.__version__, "decoder": args.decoder,
           "batch": args.batch, "max_new_tokens": args.tokens, "rounds": args.rounds,
           "threads": args.threads, "results": rows, "kv_cache_speedup": ratios}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
