"""The suite runner: ``evaluate(model_dir, dataset, out, cfg) -> EvalResult``.

Opens the model, resolves the protocol (explicit observations > benchmark > the model's own observations),
checks the split, then runs each task of the suite on one shared :class:`~rfm_eval.features.FeatureStore`
(features are extracted once per split and cached under ``cfg.cache_dir``, default ``$RFM_CACHE`` or
``<out>/features``). Writes ``results.json``, ``results.md``, ``config.json`` and ``<task>/`` folders.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_eval.benchmarks import benchmarks, prepare_benchmark
from rfm_eval.features import FeatureStore, split_size
from rfm_eval.handle import ModelHandle, open_model
from rfm_eval.jsonutil import dumps
from rfm_eval.protocol import LabelMode, Protocol
from rfm_eval.suites import suites
from rfm_eval.tasks import TaskContext, TaskResult, TaskStatus, run_task, tasks

__all__ = ["EvalConfig", "EvalResult", "evaluate", "evaluate_benchmark", "results_markdown"]

log = logging.getLogger(__name__)
_FALLBACK_SPLITS = ("test", "val", "train")


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    Attributes:
        suite: registered suite (``rfm-eval list``).
        tasks: run only these tasks (of the suite, or any registered one with default options).
        task_options: per-task option overrides, e.g. ``{"knn": {"k": 10}}``.
        benchmark: benchmark whose protocol applies (set by :func:`evaluate_benchmark`).
        observations: evaluate these observations instead of the benchmark's / model's.
        mode: label mode with ``observations``.
        fractions: label fractions of the linear probe.
        split: evaluation split (None: the benchmark's, else ``test``); an empty one falls back to val, then
            train (recorded in the results).
        train_split: training split of adapted tasks.
        n_boot: bootstrap resamples per metric.
        level: confidence level.
        seed: seed of resampling, subsampling and training.
        batch_size: images per forward pass.
        device: torch device.
        random_init: evaluate the architecture with fresh weights (baseline).
        cache_dir: feature cache URL (default ``$RFM_CACHE`` or ``<out>/features``).
        progress: progress bars.
        reuse_features: extract each split once and cache it; False re-extracts in every task (benchmarks).
    """

    suite: str = "quick"
    tasks: list[str] | None = None
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    benchmark: str | None = None
    observations: list[str] | None = None
    mode: LabelMode = LabelMode.MULTI_LABEL
    fractions: list[float] | None = None
    split: str | None = None
    train_split: str = "train"
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    batch_size: int = 64
    device: str = "cpu"
    random_init: bool = False
    cache_dir: str | None = None
    progress: bool = True
    reuse_features: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return {**asdict(self), "mode": LabelMode(self.mode).value}


@dataclass
class EvalResult:
    """What :func:`evaluate` wrote.

    Attributes:
        out: output folder URL.
        model: model directory, with ``random_init`` / ``model_hash``.
        split: the split evaluated (after any fallback).
        tasks: task name → result.
        seconds: total wall time.
        feature_seconds: time spent extracting features (the rest is tasks and bootstraps).
    """

    out: str
    model: dict[str, Any]
    split: str
    tasks: dict[str, TaskResult]
    seconds: float
    feature_seconds: float

    def table(self) -> str:
        """Headline metrics as a Markdown table."""
        return results_markdown(self.tasks)


def _protocol(cfg: EvalConfig, model: ModelHandle) -> Protocol:
    if cfg.observations:
        return Protocol(tuple(cfg.observations), LabelMode(cfg.mode))
    if cfg.benchmark:
        return benchmarks.create(cfg.benchmark).protocol
    observations = model.config.get("model", {}).get("observations")
    if not observations:
        raise ConfigError("no observations to evaluate: pass --observations A,B or --benchmark NAME")
    return Protocol(tuple(observations), LabelMode.MULTI_LABEL)


def _split(dataset: str, wanted: str) -> tuple[str, str]:
    if split_size(dataset, wanted) > 0:
        return wanted, ""
    for other in _FALLBACK_SPLITS:
        if other != wanted and split_size(dataset, other) > 0:
            note = f"split {wanted!r} is empty in {dataset}; evaluated on {other!r} instead"
            log.warning(note)
            return other, note
    raise ConfigError(f"{dataset} has no samples in any split ({', '.join(_FALLBACK_SPLITS)}): check the ingest")


def _plan(cfg: EvalConfig) -> dict[str, dict[str, Any]]:
    plan = dict(suites.create(cfg.suite).tasks)
    if cfg.tasks:
        for name in cfg.tasks:
            tasks.get(name)  # unknown names fail here, listing the known ones
        plan = {name: plan.get(name, {}) for name in cfg.tasks}
    if cfg.fractions and "linear_probe" in plan:
        plan["linear_probe"] = {**plan["linear_probe"], "fractions": list(cfg.fractions)}
    return {name: {**opts, **cfg.task_options.get(name, {})} for name, opts in plan.items()}


def _run_one(name: str, options: dict[str, Any], ctx: TaskContext, cfg: EvalConfig) -> TaskResult:
    skip = benchmarks.create(cfg.benchmark).skip.get(name) if cfg.benchmark else None
    if name not in tasks:
        return TaskResult(name, TaskStatus.SKIPPED, f"task {name!r} is not installed")
    if skip:
        return TaskResult(name, TaskStatus.SKIPPED, skip)
    log.info("task %s", name)
    return run_task(tasks.create(name, **options), ctx, n_boot=cfg.n_boot, level=cfg.level)


def evaluate(model_dir: str, dataset: str, out: str, cfg: EvalConfig | None = None) -> EvalResult:
    """Run ``cfg.suite`` on ``model_dir`` over the shard dataset ``dataset``; write the results to ``out``.

    Raises:
        ConfigError: missing model files, unknown suite/task/benchmark, no samples, bad options.
    """
    cfg = cfg or EvalConfig()
    start = time.perf_counter()
    model = open_model(model_dir, random_init=cfg.random_init, seed=cfg.seed, device=cfg.device)
    protocol = _protocol(cfg, model)
    split, note = _split(dataset, cfg.split or (benchmarks.create(cfg.benchmark).split if cfg.benchmark else "test"))
    plan = _plan(cfg)
    cache = cfg.cache_dir or os.environ.get("RFM_CACHE") or io.join(out, "features")
    store = FeatureStore(model, dataset, cache, batch_size=cfg.batch_size, progress=cfg.progress,
                         reuse=cfg.reuse_features)
    results: dict[str, TaskResult] = {}
    for name, options in plan.items():
        ctx = TaskContext(model, dataset, split, cfg.train_split, protocol, io.join(out, name), store.get,
                          seed=cfg.seed, batch_size=cfg.batch_size, progress=cfg.progress)
        results[name] = _run_one(name, options, ctx, cfg)
    info = {"directory": model_dir, "name": model.name, "kind": model.kind.value, "random_init": cfg.random_init,
            "model_hash": model.model_hash, "config": model.config.get("model", {})}
    result = EvalResult(out, info, split, results, time.perf_counter() - start, store.extract_seconds)
    _write(result, cfg, dataset, protocol, note, plan)
    return result


def evaluate_benchmark(model_dir: str, benchmark: str, data_root: str | None, out: str,
                       cfg: EvalConfig | None = None) -> EvalResult:
    """Ingest benchmark ``benchmark`` from ``data_root`` (cached) and :func:`evaluate` on it."""
    cfg = cfg or EvalConfig()
    bench = benchmarks.create(benchmark)
    cache = cfg.cache_dir or os.environ.get("RFM_CACHE") or io.join(out, "cache")
    dataset = prepare_benchmark(benchmark, data_root, cache, progress=cfg.progress)
    cfg.benchmark, cfg.split = benchmark, cfg.split or bench.split
    return evaluate(model_dir, dataset, out, cfg)


def results_markdown(results: dict[str, TaskResult]) -> str:
    """``| task | metric | value [95% CI] | n |`` rows, skipped tasks with their reason."""
    lines = ["| task | metric | value [95% CI] | n |", "|---|---|---|---|"]
    for name, res in results.items():
        if res.status == TaskStatus.SKIPPED:
            lines.append(f"| {name} | skipped | {res.reason} | |")
            continue
        for metric, est in res.headline.items():
            lines.append(f"| {name} | {metric} | {est.format()} | {res.n} |")
    return "\n".join(lines) + "\n"


def _write(result: EvalResult, cfg: EvalConfig, dataset: str, protocol: Protocol, note: str,
           plan: dict[str, dict[str, Any]]) -> None:
    share = result.feature_seconds / result.seconds if result.seconds else 0.0
    payload = {"model": result.model, "dataset": dataset, "benchmark": cfg.benchmark, "split": result.split,
               "split_note": note, "protocol": protocol.to_dict(), "plan": plan,
               "timing": {"total_s": result.seconds, "feature_s": result.feature_seconds, "feature_share": share},
               "tasks": {k: v.to_dict() for k, v in result.tasks.items()}}
    io.write_text(io.join(result.out, "config.json"), json.dumps(cfg.to_dict(), indent=2, default=str))
    io.write_text(io.join(result.out, "results.json"), dumps(payload))
    head = (f"# rfm-eval: {result.model['name']}\n\ndataset `{dataset}`, split `{result.split}`"
            f"{' (' + note + ')' if note else ''}; {cfg.n_boot} patient-level bootstrap resamples, "
            f"{cfg.level:.0%} CIs; total {result.seconds:.1f} s, features {result.feature_seconds:.1f} s\n\n")
    io.write_text(io.join(result.out, "results.md"), head + result.table())
