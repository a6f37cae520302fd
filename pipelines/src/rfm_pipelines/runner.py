"""Run, compile and submit registered pipelines: the library behind the ``rfm`` CLI."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, local
from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.pipelines import create_pipeline

DEFAULT_LOCAL_ROOT = "outputs/kfp-local"
# kfp.local runs at most this many tasks of a ParallelFor at once (its ParallelExecutor caps workers at 2).
LOCAL_PARALLEL_TASKS = 2
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# KFP parameter type → (how a command-line string becomes that type, its name in error messages).
_PARSERS: dict[str, tuple[Any, str]] = {
    "STRING": (str, "string"),
    "NUMBER_INTEGER": (int, "integer"),
    "NUMBER_DOUBLE": (float, "number"),
    "BOOLEAN": (lambda text: {"true": True, "false": False}[text.lower()], "boolean (true / false)"),
    "LIST": (json.loads, "JSON list"),
    "STRUCT": (json.loads, "JSON object"),
}


def parameter_types(pipeline: GraphComponent) -> dict[str, str]:
    """Pipeline parameter name → KFP parameter type (``STRING``, ``NUMBER_INTEGER``, ...)."""
    spec = pipeline.pipeline_spec.root.input_definitions.parameters
    return {name: _type_name(param.parameter_type) for name, param in spec.items()}


def _type_name(value: int) -> str:
    from kfp.pipeline_spec import pipeline_spec_pb2

    return str(pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(value))


def parse_arguments(pipeline: GraphComponent, pairs: list[str]) -> dict[str, Any]:
    """``["budget=0.5", ...]`` → typed pipeline arguments.

    Raises:
        ValueError: for a malformed pair, an unknown parameter (listing the known ones) or a bad value.
    """
    types = parameter_types(pipeline)
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r} must look like KEY=VALUE")
        if key not in types:
            raise ValueError(f"unknown parameter {key!r} of {pipeline.name}; known: {', '.join(sorted(types))}")
        parse, what = _PARSERS[types[key]]
        try:
            arguments[key] = parse(text)
        except (ValueError, KeyError) as err:
            raise ValueError(f"--set {key}={text!r} is not a valid {what}") from err
    return arguments


class StepFailedError(RuntimeError):
    """A step of a local run failed; earlier steps' outputs stay where they were written."""

    def __init__(self, step: str, run_dir: Path | None, detail: str) -> None:
        self.step, self.run_dir = step, run_dir
        where = f"; outputs of the finished steps are kept under {run_dir}" if run_dir else ""
        super().__init__(f"step {step!r} failed{where}. Its log is printed above this message ({detail})")


@dataclass(frozen=True)
class LocalRun:
    """A finished local run: its folder and the pipeline's output artifact."""

    run_dir: Path
    output: Any


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _newest_run(root: Path, pipeline_name: str) -> Path | None:
    runs = sorted(root.glob(f"{pipeline_name}-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def _failed_step(message: str) -> str:
    """The innermost failed task named in kfp.local's message ("Inner task failed: 'x' inside 'y'")."""
    names = re.findall(r"'([^']+)'", _ANSI.sub("", message).split("Inner task failed:", 1)[-1])
    return " inside ".join(names) if names else "unknown"


def run_local(name: str, arguments: Mapping[str, Any], pipeline_root: str = DEFAULT_LOCAL_ROOT) -> LocalRun:
    """Run a pipeline in this Python environment with kfp.local (offline; Kubernetes settings are ignored).

    Raises:
        StepFailedError: naming the failed step and the run folder (kfp.local streams each step's log to the
            console as it runs, so the failed step's log is just above the message).
    """
    pipeline = create_pipeline(name)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    try:
        with step_threads():
            task = pipeline(**arguments)
    except RuntimeError as err:
        raise StepFailedError(_failed_step(str(err)), _newest_run(root, pipeline.name), "kfp.local") from err
    run_dir = _newest_run(root, pipeline.name)
    return LocalRun(run_dir if run_dir is not None else root, task.output)


@contextmanager
def step_threads() -> Iterator[int]:
    """Give each local step process its share of the cores (unless the user set the thread variables).

    Two loop tasks at once, each with torch's default of one thread per core, oversubscribe the cores; on a
    2-core machine that made a training step 6-25x slower (tools/benchmarks/bench_local_threads.py).
    """
    if any(v in os.environ for v in THREAD_VARIABLES):
        yield int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        return
    threads = max(1, len(os.sched_getaffinity(0)) // LOCAL_PARALLEL_TASKS)
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    try:
        yield threads
    finally:
        for v in THREAD_VARIABLES:
            os.environ.pop(v, None)


def compile_pipeline(name: str, output: str) -> str:
    """Compile a registered pipeline to a KFP IR YAML file; returns its path."""
    compiler.Compiler().compile(create_pipeline(name), output)
    return output


def submit(name: str, host: str, arguments: Mapping[str, Any], experiment: str | None = None) -> str:
    """Compile and submit a pipeline run to the Kubeflow Pipelines API at ``host``; returns the run id."""
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(name, str(Path(tmp) / f"{name}.yaml"))
        client = kfp.Client(host=host)
        run = client.create_run_from_pipeline_package(package, arguments=dict(arguments),
                                                      experiment_name=experiment)
    return str(run.run_id)
