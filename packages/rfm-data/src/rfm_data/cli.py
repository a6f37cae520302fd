"""``rfm-data``: ``ingest SOURCE DEST_URL`` and ``inspect URL``. Parsing only; the work is in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from enum import Enum
from typing import Any

from rfm_data.config import (
    BurnedInPolicy,
    DeidConfig,
    DicomConfig,
    Encoding,
    FramePolicy,
    IngestConfig,
    PixelDtype,
    PreprocessConfig,
    ResizeMode,
    VoiMode,
)
from rfm_data.errors import ConfigError


def _choices(enum: type[Enum]) -> list[str]:
    return [e.value for e in enum]


def _ingest_parser(sub: Any) -> None:
    p = sub.add_parser("ingest", help="read a dataset into de-identified shards plus a manifest")
    p.add_argument("source", help="dataset root / table URL, or 'sample' for the bundled sample")
    p.add_argument("dest", help="output dataset URL (path, gs://bucket/prefix, ...); reruns resume")
    p.add_argument("--dataset", help="adapter name (default: guessed from SOURCE); see `rfm-data datasets`")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    p.add_argument("--long-side", type=int, default=256, help="stored long side in pixels (default 256)")
    p.add_argument("--resize", choices=_choices(ResizeMode), default=ResizeMode.KEEP_ASPECT.value)
    p.add_argument("--dtype", choices=_choices(PixelDtype), default=PixelDtype.UINT8.value)
    p.add_argument("--encoding", choices=_choices(Encoding), default=Encoding.RAW.value)
    p.add_argument("--shard-size", type=int, default=1024, help="images per shard (default 1024)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument("--voi", choices=_choices(VoiMode), default=VoiMode.AUTO.value,
                   help="DICOM VOI: auto = the file's VOI LUT or window (standard), else min-max")
    p.add_argument("--frame", choices=_choices(FramePolicy), default=FramePolicy.FIRST.value)
    p.add_argument("--full-res-decode", action="store_true",
                   help="decode JPEG 2000 at full resolution (default: the wavelet level covering 2x --long-side)")
    p.add_argument("--burned-in", choices=_choices(BurnedInPolicy), default=BurnedInPolicy.QUARANTINE.value)
    p.add_argument("--deid-key-env", default="RFM_DEID_KEY",
                   help="environment variable holding the pseudonymisation key (default RFM_DEID_KEY)")
    p.add_argument("--require-report", action="store_true", help="quarantine images without a usable report")
    p.add_argument("--no-progress", action="store_true")


def _config(args: argparse.Namespace) -> IngestConfig:
    return IngestConfig(
        shard_size=args.shard_size,
        workers=args.workers,
        require_report=args.require_report,
        dicom=DicomConfig(voi=VoiMode(args.voi), frame=FramePolicy(args.frame),
                          reduced_decode=not args.full_res_decode),
        deid=DeidConfig(key_env=args.deid_key_env, burned_in=BurnedInPolicy(args.burned_in)),
        preprocess=PreprocessConfig(long_side=args.long_side, resize=ResizeMode(args.resize),
                                    dtype=PixelDtype(args.dtype), encoding=Encoding(args.encoding)),
    )


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r} must look like KEY=VALUE")
        out[key] = value
    return out


def _cmd_ingest(args: argparse.Namespace) -> int:
    from rfm_data.ingest import ingest

    result = ingest(args.source, args.dest, _config(args), dataset=args.dataset,
                    adapter_options=_options(args.option), progress=not args.no_progress)
    s = result.summary
    reasons = ", ".join(f"{k} {v}" for k, v in s.by_reason.items())
    resumed = f", {result.resumed_shards} shard(s) resumed" if result.resumed_shards else ""
    print(f"{result.dataset} → {result.dest}: {s.total} inputs, {s.accepted} accepted, {s.quarantined} quarantined"
          f"{f' ({reasons})' if reasons else ''}; {len(result.shards)} shard(s) in {result.seconds:.1f} s "
          f"({result.images_per_second:.1f} images/s){resumed}. Details: rfm-data inspect {result.dest}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from rfm_data import io
    from rfm_data.ingest import MANIFEST_NAME
    from rfm_data.manifest import schema_markdown
    from rfm_data.summary import render, render_quarantined, summarise_manifest

    if args.schema:
        print(schema_markdown())
        return 0
    url = args.url if args.url.endswith(".parquet") else io.join(args.url, MANIFEST_NAME)
    summary = summarise_manifest(url)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(render(summary, title=args.url))
        print(render_quarantined(url, limit=args.limit))
    return 0


def _label_parser(sub: Any) -> None:
    p = sub.add_parser("label", help="add structured labels from the report text to a manifest (in place)")
    p.add_argument("manifest", help="dataset URL or its manifest.parquet; reruns reuse the label cache")
    p.add_argument("--backend", default="rule", help="labeler: rule (default), keyword, llm, learned")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. url=http://127.0.0.1:8000/v1, model_dir=/models/labeler")
    p.add_argument("--chunk-size", type=int, default=1024, help="reports per resumable chunk (default 1024)")
    p.add_argument("--no-plot", action="store_true", help="skip label_prevalence.png")


def _cmd_label(args: argparse.Namespace) -> int:
    from rfm_data.labels.apply import coerce_options, label_manifest

    result = label_manifest(args.manifest, backend=args.backend, options=coerce_options(_options(args.option)),
                            chunk_size=args.chunk_size, plot=not args.no_plot)
    statuses = ", ".join(f"{k} {v}" for k, v in result.by_status.items())
    top = sorted(result.prevalence.items(), key=lambda kv: -kv[1]["positive"])[:5]
    print(f"{result.manifest_url}: {result.rows} rows labelled with {result.backend} ({statuses}); "
          f"{result.from_cache} of {result.unique_texts} texts from the cache. Most positive: "
          + ", ".join(f"{name} {c['positive']}" for name, c in top) + f". Prevalence: {result.prevalence_json}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from rfm_data.adapters import list_datasets

    print("\n".join(list_datasets()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfm-data", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every quarantined input")
    sub = parser.add_subparsers(dest="command", required=True)
    _ingest_parser(sub)
    p = sub.add_parser("inspect", help="counts by status, reason, view, label and split")
    p.add_argument("url", nargs="?", default="", help="dataset URL (or its manifest.parquet)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--schema", action="store_true", help="print the manifest schema and exit")
    p.add_argument("--limit", type=int, default=20, help="quarantined inputs listed (default 20)")
    sub.add_parser("datasets", help="list the dataset adapters")
    _label_parser(sub)
    return parser


_COMMANDS = {"ingest": _cmd_ingest, "inspect": _cmd_inspect, "datasets": _cmd_datasets, "label": _cmd_label}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"rfm-data: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"rfm-data: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
