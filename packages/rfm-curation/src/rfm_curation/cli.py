"""``rfm-curate``: run a curation, re-render its report, list what is registered.

    rfm-curate run MANIFEST EMBEDDINGS --strategy hkmeans --budget 0.227 --out OUT
    rfm-curate report OUT
    rfm-curate list
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rfm_curation import select
from rfm_curation.dedup_methods import DEDUP_METHODS
from rfm_curation.errors import ConfigError
from rfm_curation.filters import list_filters
from rfm_curation.report import rewrite_report
from rfm_curation.strategies import list_strategies


def parse_budget(text: str) -> float | int:
    """``"0.227"`` → fraction 0.227; ``"5000"`` → count 5000 (a decimal point or exponent means a fraction)."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"budget {text!r} is neither a fraction (0.227) nor a count (5000)") from err


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rfm-curate", description="Deduplicate, filter and select a budgeted subset.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="curate a dataset: dedup → filters → strategy; writes selection + report")
    run.add_argument("manifest", help="rfm-data dataset folder or manifest.parquet URL")
    run.add_argument("embeddings", nargs="?", default=None, help="embedding store URL (optional for random)")
    run.add_argument("--out", required=True, help="output folder URL")
    run.add_argument("--strategy", default="hkmeans", help="selection strategy (rfm-curate list)")
    run.add_argument("--budget", type=parse_budget, default=0.227, help="fraction in (0, 1] or a count")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--split", default=None, help="curate only this split, e.g. train (default: every sample)")
    run.add_argument("--stratify", default=None,
                     help="keep the mix of this manifest column, e.g. dataset of a pooled dataset (default: none)")
    run.add_argument("--kind", default=None, help="embedding kind (default: joint, else image, else text)")
    run.add_argument("--dedup", type=_names, default=["exact", "semantic"], help="comma list, '' for none")
    run.add_argument("--semantic-threshold", type=float, default=None, help="cosine for semantic duplicates")
    run.add_argument("--filters", type=_names, default=[], help="comma list of quality filters")
    run.add_argument("--views", type=_names, default=None, help="allowed views for the 'view' filter, e.g. PA,AP")
    run.add_argument("--levels", type=lambda t: [int(v) for v in _names(t)], default=None,
                     help="hkmeans clusters per level, finest first, e.g. 10000,1000,100")
    run.add_argument("--prototypes", type=int, default=None, help="chexficient: number of prototypes")
    run.set_defaults(handler=_run)
    rep = sub.add_parser("report", help="re-render report.md / report.png of a finished curation")
    rep.add_argument("out", help="output folder of rfm-curate run")
    rep.set_defaults(handler=_report)
    sub.add_parser("list", help="list strategies, filters and deduplication methods").set_defaults(handler=_list)
    return p


def _config(args: argparse.Namespace) -> select.CurationConfig:
    strategy_options: dict[str, object] = {}
    if args.levels:
        strategy_options["levels"] = args.levels
    if args.prototypes:
        strategy_options["prototypes"] = args.prototypes
    dedup_options = {"semantic": {"threshold": args.semantic_threshold}} if args.semantic_threshold else {}
    filter_options = {"view": {"allowed": args.views}} if args.views else {}
    filters = list(args.filters) + (["view"] if args.views and "view" not in args.filters else [])
    dedup = [d for d in args.dedup if d != "semantic"] if args.embeddings is None else args.dedup
    return select.CurationConfig(strategy=args.strategy, budget=args.budget, seed=args.seed, kind=args.kind,
                                 split=args.split, stratify=args.stratify,
                                 dedup=dedup, filters=filters, strategy_options=strategy_options,
                                 dedup_options=dedup_options, filter_options=filter_options)


def _run(args: argparse.Namespace) -> None:
    print(select.curate(args.manifest, args.embeddings, args.out, _config(args)).summary())


def _report(args: argparse.Namespace) -> None:
    rewrite_report(args.out)
    print(f"wrote {args.out}/report.md and report.png")


def _list(args: argparse.Namespace) -> None:
    print("strategies:", ", ".join(list_strategies()))
    print("filters:", ", ".join(list_filters()))
    print("dedup:", ", ".join(DEDUP_METHODS.names()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rfm-curate``; returns the exit status (2 for bad input, with the message on stderr)."""
    args = _parser().parse_args(argv)
    try:
        args.handler(args)
    except ConfigError as err:
        print(f"rfm-curate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
