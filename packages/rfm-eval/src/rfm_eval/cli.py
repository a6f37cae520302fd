"""``rfm-eval``: run a suite on a model, compare runs, list what is registered.

    rfm-eval run MODEL_DIR --benchmark covid_chestxray_ieee8023 --data-root ../shared/data --out runs/a
    rfm-eval run MODEL_DIR --dataset /data/joined --suite quick --out runs/b --random-init
    rfm-eval compare runs/a runs/b --out runs/a-vs-b
    rfm-eval list

User errors (missing files, unknown names, empty data) exit 2 with one message, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rfm_data.errors import ConfigError
from rfm_eval.benchmarks import benchmarks
from rfm_eval.compare import compare
from rfm_eval.evaluate import EvalConfig, EvalResult, evaluate, evaluate_benchmark
from rfm_eval.protocol import LabelMode
from rfm_eval.suites import suites
from rfm_eval.tasks import tasks

__all__ = ["main"]


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _csv(text)]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 0.01,0.1,1: {err}") from err


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rfm-eval", description="Evaluate rfm models with bootstrap CIs.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an evaluation suite on a model directory")
    run.add_argument("model_dir")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="registered benchmark (with --data-root); see `rfm-eval list`")
    src.add_argument("--dataset", help="an already-ingested shard dataset URL")
    run.add_argument("--protocol", help="with --dataset: take observations/mode from this benchmark")
    run.add_argument("--data-root", help="folder holding the benchmark's source data")
    run.add_argument("--out", required=True, help="output folder URL")
    run.add_argument("--suite", default="quick")
    run.add_argument("--tasks", type=_csv, help="only these tasks, comma-separated")
    run.add_argument("--observations", type=_csv, help="comma-separated observations to score")
    run.add_argument("--mode", type=LabelMode, default=LabelMode.MULTI_LABEL, choices=list(LabelMode))
    run.add_argument("--fractions", type=_floats, help="linear-probe label fractions, e.g. 0.01,0.1,1")
    run.add_argument("--split", default=None, help="evaluation split (default: the benchmark's, else test)")
    run.add_argument("--n-boot", type=int, default=1000)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--device", default="cpu")
    run.add_argument("--cache-dir", help="feature cache URL (default $RFM_CACHE or OUT/features)")
    run.add_argument("--random-init", action="store_true", help="same architecture, fresh weights (baseline)")
    run.add_argument("--no-progress", action="store_true")
    cmp = sub.add_parser("compare", help="compare run folders (the first is the reference)")
    cmp.add_argument("runs", nargs="+")
    cmp.add_argument("--out", required=True)
    cmp.add_argument("--names", type=_csv, help="comma-separated run labels")
    cmp.add_argument("--n-boot", type=int, default=1000)
    sub.add_parser("list", help="list tasks, suites and benchmarks")
    return p


def _run(args: argparse.Namespace) -> EvalResult:
    cfg = EvalConfig(suite=args.suite, tasks=args.tasks, observations=args.observations, mode=args.mode,
                     fractions=args.fractions, split=args.split, n_boot=args.n_boot, seed=args.seed,
                     batch_size=args.batch_size, device=args.device, random_init=args.random_init,
                     cache_dir=args.cache_dir, progress=not args.no_progress, benchmark=args.protocol)
    if args.benchmark:
        return evaluate_benchmark(args.model_dir, args.benchmark, args.data_root, args.out, cfg)
    return evaluate(args.model_dir, args.dataset, args.out, cfg)


def _list() -> str:
    lines = ["tasks:      " + ", ".join(tasks.names()), "suites:"]
    lines += [f"  {n:<12}{suites.create(n).description}" for n in suites.names()]
    lines.append("benchmarks:")
    lines += [f"  {n:<30}{benchmarks.create(n).description}" for n in benchmarks.names()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rfm-eval`` console script."""
    args = _parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "run":
            result = _run(args)
            print(result.table())
            print(f"total {result.seconds:.1f} s (features {result.feature_seconds:.1f} s); wrote {result.out}")
        elif args.command == "compare":
            print(compare(args.runs, args.out, names=args.names, n_boot=args.n_boot).table())
        else:
            print(_list())
    except (ConfigError, KeyError) as err:
        print(f"rfm-eval: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    return 0
