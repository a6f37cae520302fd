"""Aggregate the study's runs across seeds and write its report (Markdown + JSON + PNG plots).

Inputs are the plan's runs, each with its rfm-eval results folder (the primary split; further splits under
``splits/<name>``) and its training log (metrics.jsonl with the trainer's compute counters). Per split, arm and
metric: the mean over seeds, the seeds' spread, and the mean of the per-seed bootstrap CIs. Paired tests pool the
seeds: one patient-level bootstrap resamples the split, and on each resample the arm's metric (averaged over its
seeds) is compared with the reference's (random at the same budget, and the full set), so the interval reflects
both test-set noise and seed variation of the means. The same tests run per source dataset (``domains``), from
the saved predictions restricted to that source's samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from rfm_data.errors import ConfigError
from rfm_eval.scaling import ScalingPoint, scaling_report
from rfm_eval.stats import Estimate
from rfm_eval.tasks import Predictions
from rfm_eval.tasks.base import PREDICTIONS_NAME
from rfm_pipelines.study.paired import (
    draw_resamples,
    estimate,
    headline_metrics,
    paired_from_values,
    seed_mean,
)
from rfm_pipelines.study.plan import RunSpec

__all__ = ["ArmSummary", "RunRecord", "SplitReport", "StudyReport", "load_run", "read_domains",
           "write_study_report"]

PAIRED_TASKS = ("zeroshot", "retrieval", "linear_probe", "segmentation")
DOMAIN_TASKS = ("linear_probe",)  # reported per source beside the primary metric's task
PRIMARY = "zeroshot.auroc_macro"
COMPUTE_GOAL = 0.30  # the full model's metric at <= 30 % of its compute


@dataclass
class RunRecord:
    """One finished run: its plan entry, evaluation folder, headline metrics and training counters."""

    spec: RunSpec
    eval_dir: str
    metrics: dict[str, Estimate]
    flops: float
    steps: int
    seconds: float
    samples_seen: float


@dataclass
class ArmSummary:
    """One arm across its seeds: metric → mean, seed sd, mean CI bounds; compute and data size."""

    arm: str
    kind: str
    budget: float
    seeds: list[int]
    mean: dict[str, float] = field(default_factory=dict)
    sd: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0
    steps: float = 0.0
    train_samples: float = 0.0
    seconds: float = 0.0
    step_fraction: float = 1.0
    base: str = ""


@dataclass
class SplitReport:
    """Everything found on one evaluated split.

    Attributes:
        split: the split's name.
        arms: arm → summary over seeds.
        paired: reference arm → arm → metric → paired estimate (``PairedEstimate.to_dict()``).
        goals: the goals checked on this split (see :func:`_goals`).
        domains: source dataset → ``{"n": rows, "arms": {arm: {metric: Estimate dict}}, "paired": like paired}``.
    """

    split: str
    arms: dict[str, ArmSummary]
    paired: dict[str, dict[str, dict[str, dict[str, Any]]]]
    goals: dict[str, Any]
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "arms": {k: asdict(v) for k, v in self.arms.items()}, "paired": self.paired,
                "goals": self.goals, "domains": self.domains}


@dataclass
class StudyReport:
    """What :func:`write_study_report` wrote and found; ``arms`` / ``paired`` / ``goals`` are the primary
    split's (the first of ``splits``)."""

    out: str
    primary: str
    arms: dict[str, ArmSummary]
    paired: dict[str, dict[str, dict[str, dict[str, Any]]]]  # reference → arm → metric → paired estimate
    goals: dict[str, Any]
    scaling: dict[str, Any]
    files: dict[str, str]
    splits: dict[str, SplitReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _clean({"out": self.out, "primary": self.primary,
                                       "arms": {k: asdict(v) for k, v in self.arms.items()}, "paired": self.paired,
                                       "goals": self.goals, "scaling": self.scaling, "files": self.files,
                                       "splits": {k: v.to_dict() for k, v in self.splits.items()}})
        return data


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def _read_metrics(eval_dir: str) -> dict[str, Estimate]:
    results_path = Path(eval_dir) / "results.json"
    if not results_path.exists():
        raise ConfigError(f"{eval_dir} is not an rfm-eval results folder (no results.json)")
    data = json.loads(results_path.read_text())
    return {f"{task}.{name}": Estimate.from_dict(est) for task, result in data["tasks"].items()
            if result.get("status") == "ok" for name, est in result.get("headline", {}).items()}


def load_run(spec: RunSpec, eval_dir: str, training_log: str) -> RunRecord:
    """Read a run's ``results.json`` and the last record of its ``metrics.jsonl``.

    Raises:
        ConfigError: a folder without results.json or metrics.jsonl, or one evaluated under another name.
    """
    log_path = Path(training_log) / "metrics.jsonl"
    metrics = _read_metrics(eval_dir)
    if not log_path.exists():
        raise ConfigError(f"{training_log} has no metrics.jsonl: pass the pretrain step's training_log")
    name_file = Path(eval_dir) / "run_name.txt"
    if name_file.exists() and name_file.read_text().strip() != spec.label:
        raise ConfigError(f"evaluation {eval_dir} is named {name_file.read_text().strip()!r}, but the plan's run "
                          f"at this position is {spec.label!r}: pass evaluations in the plan's order")
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    last: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return RunRecord(spec, eval_dir, metrics, float(last.get("flops", 0.0)), int(last.get("step", 0)),
                     float(last.get("wall_s", 0.0)), float(last.get("samples", 0.0)))


def read_domains(dataset: str) -> dict[str, str]:
    """Sample id → source dataset (the pooled manifest's ``dataset`` column) of a joined dataset folder."""
    from rfm_data.manifest import read_manifest  # pyarrow only where domains are asked for

    table = read_manifest(f"{dataset.rstrip('/')}/manifest.parquet")
    if "dataset" not in table.schema.names:
        return {}
    return dict(zip(table["sample_id"].to_pylist(), table["dataset"].to_pylist(), strict=True))


def _primary_split(runs: Sequence[RunRecord]) -> str:
    data = json.loads((Path(runs[0].eval_dir) / "results.json").read_text())
    return str(data.get("split") or "test")


def _split_runs(runs: Sequence[RunRecord], split: str, primary: str) -> list[RunRecord]:
    """The runs as evaluated on ``split``: the primary folder, or its ``splits/<split>`` sub-folder."""
    if split == primary:
        return list(runs)
    out = []
    for r in runs:
        folder = str(Path(r.eval_dir) / "splits" / split)
        if not (Path(folder) / "results.json").exists():
            raise ConfigError(f"{r.eval_dir} has no evaluation of split {split!r} (splits/{split}/results.json): "
                              "evaluate with extra_splits, or drop the split from the report's splits")
        out.append(replace(r, eval_dir=folder, metrics=_read_metrics(folder)))
    return out


def _by_arm(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    by_arm: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_arm.setdefault(r.spec.arm, []).append(r)
    return by_arm


def _seed_stats(s: ArmSummary, m: str, ests: list[Estimate]) -> None:
    values = np.array([e.value for e in ests])
    s.mean[m] = float(values.mean())
    s.sd[m] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    s.low[m] = float(np.nanmean([e.low for e in ests])) if any(math.isfinite(e.low) for e in ests) else math.nan
    s.high[m] = float(np.nanmean([e.high for e in ests])) if any(math.isfinite(e.high) for e in ests) else math.nan


def _summarise(runs: Sequence[RunRecord], n_train: int) -> dict[str, ArmSummary]:
    out = {}
    for arm, rs in _by_arm(runs).items():
        spec = rs[0].spec
        s = ArmSummary(arm, spec.kind, spec.fraction, [r.spec.seed for r in rs],
                       flops=float(np.mean([r.flops for r in rs])), steps=float(np.mean([r.steps for r in rs])),
                       train_samples=spec.fraction * n_train, seconds=float(np.mean([r.seconds for r in rs])),
                       step_fraction=float(getattr(spec, "step_fraction", 1.0)), base=str(getattr(spec, "base", "")))
        for m in sorted({m for r in rs for m in r.metrics}):
            ests = [r.metrics[m] for r in rs if m in r.metrics and r.metrics[m].defined]
            if ests:
                _seed_stats(s, m, ests)
        out[arm] = s
    return out


def _headline(name: str) -> bool:
    return "[" not in name and "chance" not in name and "median_rank" not in name


class _PredictionCache:
    """Each run's predictions per task, read once for every split, domain and comparison that needs them."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], Predictions | None] = {}

    def get(self, eval_dir: str, task: str) -> Predictions | None:
        key = (eval_dir, task)
        if key not in self._loaded:
            path = Path(eval_dir) / task / PREDICTIONS_NAME
            self._loaded[key] = Predictions.load(str(path)) if path.exists() else None
        return self._loaded[key]


# Run label → metric → values on [full set, resample 1, ...] (shared resamples within one task and row set).
_Vectors = dict[str, dict[str, np.ndarray]]


def _task_vectors(runs: Sequence[RunRecord], task: str, cache: _PredictionCache, n_boot: int, seed: int,
                  keep: set[str] | None = None) -> _Vectors:
    """Every run's paired metrics of ``task`` on shared resamples of the rows all runs scored (∩ ``keep``)."""
    preds = {r.spec.label: p for r in runs if (p := cache.get(r.eval_dir, task)) is not None}
    if not preds:
        return {}
    first = next(iter(preds.values()))
    common = set(first.sample_ids).intersection(*(set(p.sample_ids) for p in preds.values()))
    rows = [i for i, s in enumerate(first.sample_ids) if s in common and (keep is None or s in keep)]
    if not rows:
        return {}
    ids = [first.sample_ids[i] for i in rows]
    draws = draw_resamples(ids, [first.groups[i] for i in rows], n_boot, seed)
    out: _Vectors = {}
    for label, p in preds.items():
        pos = {s: i for i, s in enumerate(p.sample_ids)}
        aligned = p.take(np.array([pos[s] for s in ids]))
        out[label] = {f"{task}.{m}": draws.apply(fn) for m, fn in headline_metrics(task, aligned).items()}
    return out


def _arm_vectors(by_arm: Mapping[str, Sequence[RunRecord]], vectors: _Vectors) -> dict[str, dict[str, np.ndarray]]:
    """Arm → metric → seed-mean values per resample."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for arm, rs in by_arm.items():
        per_seed = [vectors[r.spec.label] for r in rs if r.spec.label in vectors]
        if per_seed:
            names = set.intersection(*(set(v) for v in per_seed))
            out[arm] = {m: seed_mean([v[m] for v in per_seed]) for m in sorted(names)}
    return out


def _compared(arms: Mapping[str, ArmSummary], ref: str) -> list[str]:
    """Arms tested against ``ref``: curated arms and random against full; curated arms against random; the
    shortened (compute) arms against full, whose metric the compute goal asks them to reach."""
    kinds = ("strategy", "baseline", "compute") if ref == "full" else ("strategy",)
    return [a.arm for a in arms.values() if a.kind in kinds and a.arm != ref]


def _paired(arms: Mapping[str, ArmSummary], vectors: Mapping[str, Mapping[str, np.ndarray]], baseline: str,
            metrics: set[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in ("full", baseline):
        if not ref or ref not in vectors:
            continue
        wanted = set(vectors[ref]) if metrics is None else set(vectors[ref]) & metrics
        out[ref] = {}
        for arm in _compared(arms, ref):
            shared = sorted(wanted & set(vectors.get(arm, {})))
            out[ref][arm] = {m: paired_from_values(vectors[ref][m], vectors[arm][m]) for m in shared}
    return out


def _all_vectors(runs: Sequence[RunRecord], tasks: Sequence[str], cache: _PredictionCache, n_boot: int, seed: int,
                 keep: set[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    by_arm = _by_arm(runs)
    merged: dict[str, dict[str, np.ndarray]] = {}
    for task in tasks:
        for arm, per_metric in _arm_vectors(by_arm, _task_vectors(runs, task, cache, n_boot, seed, keep)).items():
            merged.setdefault(arm, {}).update(per_metric)
    return merged


def _domain_reports(runs: Sequence[RunRecord], arms: Mapping[str, ArmSummary], domains: Mapping[str, str],
                    primary: str, baseline: str, cache: _PredictionCache, n_boot: int,
                    seed: int) -> dict[str, dict[str, Any]]:
    """Per source dataset: the primary metric and the linear probe, seed means with CIs and paired tests."""
    tasks = list(dict.fromkeys([primary.split(".")[0], *DOMAIN_TASKS]))
    first = cache.get(runs[0].eval_dir, tasks[0])
    names = sorted({domains[s] for s in (first.sample_ids if first else []) if s in domains})
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        keep = {s for s, d in domains.items() if d == name}
        vectors = _all_vectors(runs, tasks, cache, n_boot, seed, keep)
        wanted = {m for v in vectors.values() for m in v if m == primary or m.split(".")[0] in DOMAIN_TASKS}
        n = sum(s in keep for s in first.sample_ids) if first else 0
        out[name] = {"n": n, "arms": {a: {m: estimate(v[m]).to_dict() for m in sorted(wanted & set(v))}
                                          for a, v in vectors.items()},
                     "paired": _paired(arms, vectors, baseline, wanted)}
    return out


def _strategy_goals(arms: Mapping[str, ArmSummary], primary: str, baseline: str) -> dict[str, dict[str, Any]]:
    """curated@b ≥ random@b + 2 AUROC points, and ≥ 98 % of the full model, per curated arm."""
    full, rand = arms["full"], arms.get(baseline)
    if rand is None or primary not in full.mean or primary not in rand.mean:
        return {}
    return {a.arm: {"gain_over_random_points": 100 * (a.mean[primary] - rand.mean[primary]),
                    "fraction_of_full": a.mean[primary] / full.mean[primary],
                    "beats_random_by_2_points": a.mean[primary] >= rand.mean[primary] + 0.02,
                    "reaches_98pct_of_full": a.mean[primary] >= 0.98 * full.mean[primary]}
            for a in arms.values() if a.kind == "strategy" and primary in a.mean}


def _step_fraction(a: ArmSummary, full: ArmSummary) -> float:
    # Plans written before RunSpec.step_fraction existed mark shortened runs by kind only: use the steps trained.
    if a.step_fraction < 1 or a.kind != "compute" or full.steps <= 0:
        return a.step_fraction
    return a.steps / full.steps


def _compute_fraction(a: ArmSummary, full: ArmSummary) -> float:
    # Measured FLOPs when both runs logged them (the online selector's scoring passes count too), else steps.
    return a.flops / full.flops if a.flops > 0 and full.flops > 0 else _step_fraction(a, full)


def _shortened_run(a: ArmSummary, full: ArmSummary, primary: str) -> dict[str, Any]:
    return {"base": a.base or "full", "step_fraction": _step_fraction(a, full),
            "compute_fraction": _compute_fraction(a, full), "value": a.mean[primary],
            "reaches_full": a.mean[primary] >= full.mean[primary]}


def _compute_goal(arms: Mapping[str, ArmSummary], primary: str) -> dict[str, Any]:
    """The full model's final metric reached at ≤ 30 % of its compute: by each shortened run of the plan
    (``step_fraction`` < 1, e.g. ``full@30%-steps`` or ``hkmeans@25%@30%-steps``)."""
    full = arms["full"]
    if primary not in full.mean:
        return {}
    shortened = {a.arm: _shortened_run(a, full, primary) for a in arms.values()
                 if _step_fraction(a, full) < 1 and primary in a.mean}
    met = [k for k, v in shortened.items() if v["reaches_full"] and v["compute_fraction"] <= COMPUTE_GOAL]
    reached = [a.flops / full.flops for a in arms.values()
               if primary in a.mean and a.mean[primary] >= full.mean[primary] and full.flops > 0 and a.flops > 0]
    return {"compute_arms": shortened, "full_reached_at_30pct_compute": bool(met), "reached_by": met,
            "compute_fraction_to_full_metric": min(reached) if reached else None}


def _goals(arms: Mapping[str, ArmSummary], primary: str, baseline: str) -> dict[str, Any]:
    return {"primary": primary, "per_strategy": _strategy_goals(arms, primary, baseline),
            **_compute_goal(arms, primary)}


def _per_class(arms: Mapping[str, ArmSummary], baseline: str, rare: Sequence[str]) -> dict[str, dict[str, float]]:
    """Arm → ``task.auroc[finding]`` → gain over the random baseline, for the rare findings."""
    base = arms.get(baseline)
    if base is None:
        return {}
    return {a.arm: {m: a.mean[m] - base.mean[m] for m in a.mean
                    if m in base.mean and any(f"[{r}]" in m for r in rare) and "auroc" in m}
            for a in arms.values() if a.kind == "strategy"}


def _split_report(split: str, runs: Sequence[RunRecord], n_train: int, primary: str, domains: Mapping[str, str],
                  cache: _PredictionCache, n_boot: int, seed: int) -> SplitReport:
    arms = _summarise(runs, n_train)
    if "full" not in arms:
        raise ConfigError("the study needs a 'full' arm (the reference): build runs with plan_runs")
    if primary not in arms["full"].mean:
        known = sorted(m for m in arms["full"].mean if _headline(m))
        raise ConfigError(f"primary metric {primary!r} is not in the {split} evaluations; known: {known}")
    baseline = next((a.arm for a in arms.values() if a.kind == "baseline"), "")
    vectors = _all_vectors(runs, PAIRED_TASKS, cache, n_boot, seed)
    by_domain = _domain_reports(runs, arms, domains, primary, baseline, cache, n_boot, seed) if domains else {}
    return SplitReport(split, arms, _paired(arms, vectors, baseline), _goals(arms, primary, baseline), by_domain)


def _scaling(runs: Sequence[RunRecord], root: Path, n_train: int, primary: str, n_boot: int,
             seed: int) -> dict[str, Any]:
    points = [ScalingPoint.from_estimate(r.spec.fraction * n_train, r.metrics[primary], r.flops, r.spec.label)
              for r in runs if r.spec.kind in ("reference", "baseline", "scaling") and primary in r.metrics
              and r.metrics[primary].defined]
    try:
        rep = scaling_report(points, str(root / "scaling"), metric=primary, n_boot=n_boot, seed=seed,
                             axes=["samples"])
    except ConfigError as err:  # e.g. a flat or noisy metric the law cannot follow: say so in the report
        return {"error": str(err)}
    fit = rep.fits["samples"]
    return {"a": fit.a, "b": fit.b, "c": fit.c, "x0": fit.x0, "rmse": fit.rmse,
            "predictions": [{"factor": p.factor, "value": p.value.to_dict(), "gain": p.gain.to_dict()}
                            for p in fit.predictions], "files": rep.files}


def write_study_report(runs: Sequence[RunRecord], out: str, n_train: int, budget: float, rare: Sequence[str] = (),
                       primary: str = PRIMARY, n_boot: int = 200, seed: int = 0, title: str = "",
                       splits: Sequence[str] = (), domains: Mapping[str, str] | None = None) -> StudyReport:
    """Aggregate ``runs`` per evaluated split, test arms against random at ``budget`` and the full set (overall
    and per source dataset), check the goals on every split, fit the scaling law, and write ``study.md``,
    ``study.json`` and the plots to ``out``.

    Args:
        splits: the evaluated splits, the primary (the runs' own results folders) first; the others are read
            from ``<eval_dir>/splits/<name>``. Default: the primary only.
        domains: sample id → source dataset (:func:`read_domains`); None or empty: no per-domain tables.

    Raises:
        ConfigError: no runs, no ``full`` arm, a primary metric not evaluated, or a split not evaluated.
    """
    from rfm_pipelines.study.render import render  # matplotlib only when writing

    if not runs:
        raise ConfigError("the study has no finished runs")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    primary_split = _primary_split(runs)
    names = list(dict.fromkeys([primary_split, *(s for s in splits[1:] if s != primary_split)]))
    cache = _PredictionCache()
    with threadpool_limits(1):  # small matrices: BLAS threads only contend with the other steps' processes
        per_split = {s: _split_report(s, _split_runs(runs, s, primary_split), n_train, primary, domains or {},
                                      cache, n_boot, seed) for s in names}
    main = per_split[primary_split]
    baseline = next((a.arm for a in main.arms.values() if a.kind == "baseline"), "")
    report = StudyReport(str(root), primary, main.arms, main.paired, main.goals,
                         _scaling(runs, root, n_train, primary, n_boot, seed), {}, per_split)
    report.goals["per_class_gains"] = _per_class(main.arms, baseline, rare)
    report.files = render(report, baseline, n_train, title)
    Path(report.files["json"]).write_text(json.dumps(report.to_dict(), indent=2))
    return report
