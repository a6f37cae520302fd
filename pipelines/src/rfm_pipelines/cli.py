"""``rfm``: run pipelines locally (kfp.local), compile them, submit them to Kubeflow; list what is registered.

    rfm run data --local --set source=sample
    rfm compile curation -o curation.yaml
    rfm submit data --host https://kubeflow.example.org/pipeline --set source=gs://bucket/raw
    rfm pipelines list | rfm components list
    rfm study efficiency --quick --data-root ../shared/data --out outputs/study-quick
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rfm_pipelines import runner
from rfm_pipelines.components import components
from rfm_pipelines.pipelines import create_pipeline, pipelines
from rfm_pipelines.study import study_presets
from rfm_pipelines.study.run import run_study


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="registered pipeline name (rfm pipelines list)")
    p.add_argument("--set", dest="values", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter (repeatable), typed by the pipeline's signature")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline: locally (default) or, with --host, on Kubeflow")
    _add_arguments(run)
    run.add_argument("--local", action="store_true", help="run with kfp.local in this environment (the default)")
    run.add_argument("--host", help="submit to this Kubeflow Pipelines endpoint instead")
    run.add_argument("--pipeline-root", default=runner.DEFAULT_LOCAL_ROOT, help="local outputs folder")
    comp = sub.add_parser("compile", help="compile a pipeline to KFP YAML")
    comp.add_argument("pipeline", help="registered pipeline name (rfm pipelines list)")
    comp.add_argument("-o", "--output", required=True, help="output YAML file")
    submit = sub.add_parser("submit", help="compile and submit a pipeline run to Kubeflow Pipelines")
    _add_arguments(submit)
    submit.add_argument("--host", required=True, help="Kubeflow Pipelines API URL")
    submit.add_argument("--experiment", default=None, help="experiment name (default: the server's default)")
    for kind in ("pipelines", "components"):
        listing = sub.add_parser(kind, help=f"list the registered {kind}")
        listing.add_argument("action", choices=["list"])
    study = sub.add_parser("study", help="run a study locally: `efficiency` (full vs random vs curated, seeds, report)")
    study.add_argument("study", choices=["efficiency"], help="the study")
    study.add_argument("--quick", action="store_true", help="the CI-sized preset (same as --preset quick)")
    study.add_argument("--preset", default="full", help=f"study preset: {', '.join(study_presets.names())}")
    study.add_argument("--data-root", default="../shared/data", help="folder holding the presets' source folders")
    study.add_argument("--out", default="outputs/study", help="where the report, plots and JSON are copied")
    study.add_argument("--set", dest="values", action="append", default=[], metavar="KEY=VALUE",
                       help="override a preset field (repeatable; JSON for numbers and lists)")
    study.add_argument("--pipeline-root", default=runner.DEFAULT_LOCAL_ROOT, help="kfp.local outputs folder")
    return parser


def _run(args: argparse.Namespace) -> int:
    arguments = runner.parse_arguments(create_pipeline(args.pipeline), args.values)
    if args.host and args.local:
        raise ValueError("give --local or --host, not both")
    if args.host:
        print(f"submitted run {runner.submit(args.pipeline, args.host, arguments)}")
        return 0
    try:
        run = runner.run_local(args.pipeline, arguments, args.pipeline_root)
    except runner.StepFailedError as err:
        print(f"rfm: {args.pipeline}: {err}", file=sys.stderr)
        return 1
    output = run.output
    if getattr(output, "schema_title", "") == "system.Markdown":  # a report: show it, not just its path
        print("\n" + Path(output.path).read_text())
    print(f"{args.pipeline}: finished; output {output.uri} (run folder {run.run_dir})")
    return 0


def _submit(args: argparse.Namespace) -> int:
    arguments = runner.parse_arguments(create_pipeline(args.pipeline), args.values)
    print(f"submitted run {runner.submit(args.pipeline, args.host, arguments, args.experiment)}")
    return 0


def _compile(args: argparse.Namespace) -> int:
    print(f"wrote {runner.compile_pipeline(args.pipeline, args.output)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    registry = pipelines if args.command == "pipelines" else components
    print("\n".join(registry.names()))
    return 0


def _study(args: argparse.Namespace) -> int:
    try:
        done = run_study("quick" if args.quick else args.preset, args.data_root, args.out, args.values,
                         args.pipeline_root)
    except runner.StepFailedError as err:
        print(f"rfm: study {args.study}: {err}", file=sys.stderr)
        return 1
    print("\n" + done.report.read_text())
    print(f"study {args.study}: {done.runs} runs in {done.seconds:.0f} s; report {done.report} "
          f"(kfp.local run folder {done.run_dir})")
    return 0


_COMMANDS = {"study": _study, "run": _run, "submit": _submit, "compile": _compile, "pipelines": _list,
             "components": _list}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rfm``; returns the exit status (2 for bad input, with the message on stderr)."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (KeyError, ValueError) as err:  # unknown names and bad --set values: a user error, not a crash
        print(f"rfm: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
