"""Aggregate the study's runs across seeds and write its report (Markdown + JSON + PNG plots).

Inputs are the plan's runs, each with its rfm-eval results folder and its training log (metrics.jsonl with the
trainer's compute counters). Per arm and metric: the mean over seeds, the seeds' spread, and the mean of the
per-seed bootstrap CIs. Paired tests pool the seeds: one patient-level bootstrap resamples the test set, and on
each resample the arm's metric (averaged over its seeds) is compared with the reference's (random at the same
budget, and the full set), so the interval reflects both test-set noise and seed variation of the means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from rfm_data.errors import ConfigError
from rfm_eval.scaling import ScalingPoint, scaling_report
from rfm_eval.stats import Estimate, paired_bootstrap
from rfm_eval.tasks import Predictions, tasks
from rfm_eval.tasks.base import PREDICTIONS_NAME
from rfm_pipelines.study.plan import RunSpec

__all__ = ["ArmSummary", "RunRecord", "StudyReport", "load_run", "write_study_report"]

PAIRED_TASKS = ("zeroshot", "retrieval", "linear_probe", "segmentation")
PRIMARY = "zeroshot.auroc_macro"


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


@dataclass
class StudyReport:
    """What :func:`write_study_report` wrote and found."""

    out: str
    primary: str
    arms: dict[str, ArmSummary]
    paired: dict[str, dict[str, dict[str, dict[str, Any]]]]  # reference → arm → metric → paired estimate
    goals: dict[str, Any]
    scaling: dict[str, Any]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _clean({"out": self.out, "primary": self.primary,
                       "arms": {k: asdict(v) for k, v in self.arms.items()}, "paired": self.paired,
                       "goals": self.goals, "scaling": self.scaling, "files": self.files})
        return data


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def load_run(spec: RunSpec, eval_dir: str, training_log: str) -> RunRecord:
    """Read a run's ``results.json`` and the last record of its ``metrics.jsonl``.

    Raises:
        ConfigError: a folder without results.json or metrics.jsonl, or one evaluated under another name.
    """
    results_path, log_path = Path(eval_dir) / "results.json", Path(training_log) / "metrics.jsonl"
    if not results_path.exists():
        raise ConfigError(f"{eval_dir} is not an rfm-eval results folder (no results.json)")
    if not log_path.exists():
        raise ConfigError(f"{training_log} has no metrics.jsonl: pass the pretrain step's training_log")
    name_file = Path(eval_dir) / "run_name.txt"
    if name_file.exists() and name_file.read_text().strip() != spec.label:
        raise ConfigError(f"evaluation {eval_dir} is named {name_file.read_text().strip()!r}, but the plan's run "
                          f"at this position is {spec.label!r}: pass evaluations in the plan's order")
    data = json.loads(results_path.read_text())
    metrics = {f"{task}.{name}": Estimate.from_dict(est) for task, result in data["tasks"].items()
               if result.get("status") == "ok" for name, est in result.get("headline", {}).items()}
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    last: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return RunRecord(spec, eval_dir, metrics, float(last.get("flops", 0.0)), int(last.get("step", 0)),
                     float(last.get("wall_s", 0.0)), float(last.get("samples", 0.0)))


def _summarise(runs: Sequence[RunRecord], n_train: int) -> dict[str, ArmSummary]:
    by_arm: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_arm.setdefault(r.spec.arm, []).append(r)
    out = {}
    for arm, rs in by_arm.items():
        s = ArmSummary(arm, rs[0].spec.kind, rs[0].spec.fraction, [r.spec.seed for r in rs],
                       flops=float(np.mean([r.flops for r in rs])), steps=float(np.mean([r.steps for r in rs])),
                       train_samples=rs[0].spec.fraction * n_train,
                       seconds=float(np.mean([r.seconds for r in rs])))
        names = sorted({m for r in rs for m in r.metrics})
        for m in names:
            ests = [r.metrics[m] for r in rs if m in r.metrics and r.metrics[m].defined]
            if not ests:
                continue
            values = np.array([e.value for e in ests])
            s.mean[m] = float(values.mean())
            s.sd[m] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            s.low[m] = float(np.nanmean([e.low for e in ests])) if any(math.isfinite(e.low) for e in ests) \
                else math.nan
            s.high[m] = float(np.nanmean([e.high for e in ests])) if any(math.isfinite(e.high) for e in ests) \
                else math.nan
        out[arm] = s
    return out


def _seed_mean_fns(runs: Sequence[RunRecord], task: str, ids: list[str]) -> dict[str, Callable[[np.ndarray], float]]:
    """Metric → f(rows) = mean over ``runs`` of the metric on those rows (rows index ``ids``)."""
    impl = tasks.create(task)
    per_run = []
    for r in runs:
        pred = Predictions.load(str(Path(r.eval_dir) / task / PREDICTIONS_NAME))
        pos = {s: i for i, s in enumerate(pred.sample_ids)}
        per_run.append(impl.metrics(pred.take(np.array([pos[s] for s in ids]))))
    names = set.intersection(*(set(f) for f in per_run))

    def mean_of(m: str) -> Callable[[np.ndarray], float]:
        return lambda idx: float(np.nanmean([f[m](idx) for f in per_run]))
    return {m: mean_of(m) for m in names}


def _paired_tests(arm_runs: Sequence[RunRecord], ref_runs: Sequence[RunRecord], metrics: set[str], n_boot: int,
                  seed: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for task in PAIRED_TASKS:
        wanted = {m.split(".", 1)[1] for m in metrics if m.startswith(f"{task}.")}
        folders = [Path(r.eval_dir) / task / PREDICTIONS_NAME for r in (*arm_runs, *ref_runs)]
        if not wanted or not all(f.exists() for f in folders):
            continue
        preds = [Predictions.load(str(f)) for f in folders]
        common = set(preds[0].sample_ids).intersection(*(set(p.sample_ids) for p in preds[1:]))
        ids = [s for s in preds[0].sample_ids if s in common]
        if not ids:
            continue
        groups = np.asarray([preds[0].groups[preds[0].sample_ids.index(s)] for s in ids])
        fa, fb = _seed_mean_fns(ref_runs, task, ids), _seed_mean_fns(arm_runs, task, ids)
        with threadpool_limits(1):
            for m in sorted(wanted & set(fa) & set(fb)):
                p = paired_bootstrap(fa[m], fb[m], len(ids), groups, n_boot=n_boot, seed=seed)
                out[f"{task}.{m}"] = p.to_dict()
    return out


def _headline(name: str) -> bool:
    return "[" not in name and "chance" not in name and "median_rank" not in name


def _fmt(s: ArmSummary, m: str) -> str:
    if m not in s.mean:
        return "–"
    ci = f" [{s.low[m]:.3f}, {s.high[m]:.3f}]" if math.isfinite(s.low.get(m, math.nan)) else ""
    return f"{s.mean[m]:.3f} ± {s.sd[m]:.3f}{ci}"


def _plot_budget(arms: dict[str, ArmSummary], primary: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    random_arms = sorted((a for a in arms.values() if a.kind in ("reference", "baseline", "scaling")
                          and primary in a.mean), key=lambda a: a.budget)
    if random_arms:
        ax.errorbar([a.budget for a in random_arms], [a.mean[primary] for a in random_arms],
                    yerr=[a.sd[primary] for a in random_arms], fmt="-o", color="black", capsize=3,
                    label="random subsets (mean ± seed sd)")
        lows = [a.low.get(primary, math.nan) for a in random_arms]
        highs = [a.high.get(primary, math.nan) for a in random_arms]
        ax.fill_between([a.budget for a in random_arms], lows, highs, color="grey", alpha=0.2,
                        label="random: mean 95% bootstrap CI")
    for i, a in enumerate(a for a in arms.values() if a.kind == "strategy" and primary in a.mean):
        ax.errorbar([a.budget * (1 + 0.04 * (i + 1))], [a.mean[primary]], yerr=[a.sd[primary]], fmt="s",
                    color=f"C{i}", capsize=3, label=a.arm)
    ax.set(xscale="log", xlabel="budget (fraction of the train split; online arm at its selection ratio)",
           ylabel=primary, title="metric vs budget (equal steps)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_compute(arms: dict[str, ArmSummary], primary: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, a in enumerate(a for a in arms.values() if primary in a.mean and a.flops > 0):
        ax.errorbar([a.flops], [a.mean[primary]], yerr=[a.sd[primary]], fmt="o", color=f"C{i % 10}", capsize=3,
                    label=a.arm)
    ax.set(xscale="log", xlabel="training FLOPs (mean over seeds)", ylabel=primary, title="metric vs compute")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _per_class(arms: dict[str, ArmSummary], baseline: str, rare: Sequence[str]) -> dict[str, dict[str, float]]:
    """Arm → ``task.auroc[finding]`` → gain over the random baseline, for the rare findings."""
    base = arms.get(baseline)
    if base is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for a in arms.values():
        if a.kind != "strategy":
            continue
        out[a.arm] = {m: a.mean[m] - base.mean[m] for m in a.mean
                      if m in base.mean and any(f"[{r}]" in m for r in rare) and "auroc" in m}
    return out


def _plot_per_class(gains: dict[str, dict[str, float]], path: Path) -> None:
    metrics = sorted({m for g in gains.values() for m in g})
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(metrics) + 1)))
    width = 0.8 / max(1, len(gains))
    for i, (arm, g) in enumerate(gains.items()):
        ax.barh(np.arange(len(metrics)) + i * width, [g.get(m, 0.0) for m in metrics], height=width, label=arm)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(metrics)) + width * (len(gains) - 1) / 2, metrics, fontsize=7)
    ax.set(xlabel="AUROC gain over random at the same budget (mean over seeds)", title="rare findings")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _goals(arms: dict[str, ArmSummary], primary: str, baseline: str) -> dict[str, Any]:
    full, rand = arms.get("full"), arms.get(baseline)
    out: dict[str, Any] = {"primary": primary, "per_strategy": {}}
    if full is None or rand is None or primary not in full.mean or primary not in rand.mean:
        return out
    for a in arms.values():
        if a.kind != "strategy" or primary not in a.mean:
            continue
        out["per_strategy"][a.arm] = {
            "gain_over_random_points": 100 * (a.mean[primary] - rand.mean[primary]),
            "fraction_of_full": a.mean[primary] / full.mean[primary],
            "beats_random_by_2_points": a.mean[primary] >= rand.mean[primary] + 0.02,
            "reaches_98pct_of_full": a.mean[primary] >= 0.98 * full.mean[primary]}
    reached = [a.flops / full.flops for a in arms.values()
               if primary in a.mean and a.mean[primary] >= full.mean[primary] and full.flops > 0 and a.flops > 0]
    out["compute_fraction_to_full_metric"] = min(reached) if reached else None
    out["full_reached_at_30pct_compute"] = bool(reached) and min(reached) <= 0.30
    return out


def write_study_report(runs: Sequence[RunRecord], out: str, n_train: int, budget: float, rare: Sequence[str] = (),
                       primary: str = PRIMARY, n_boot: int = 200, seed: int = 0, title: str = "") -> StudyReport:
    """Aggregate ``runs``, test arms against random at ``budget`` and the full set, fit the scaling law, and
    write ``study.md``, ``study.json`` and the plots to ``out``.

    Raises:
        ConfigError: no runs, or no ``full`` arm to compare with.
    """
    if not runs:
        raise ConfigError("the study has no finished runs")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    arms = _summarise(runs, n_train)
    if "full" not in arms:
        raise ConfigError("the study needs a 'full' arm (the reference): build runs with plan_runs")
    if primary not in arms["full"].mean:
        known = sorted(m for m in arms["full"].mean if _headline(m))
        raise ConfigError(f"primary metric {primary!r} is not in the evaluations; known: {known}")
    baseline = next((a.arm for a in arms.values() if a.kind == "baseline"), "")
    by_arm: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_arm.setdefault(r.spec.arm, []).append(r)
    metrics = {m for m in arms["full"].mean if _headline(m) and m.split(".")[0] in PAIRED_TASKS}
    paired: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in ("full", baseline):
        if not ref:
            continue
        paired[ref] = {a.arm: _paired_tests(by_arm[a.arm], by_arm[ref], metrics, n_boot, seed)
                       for a in arms.values() if a.kind in ("strategy", "baseline") and a.arm != ref}
    files = {"markdown": str(root / "study.md"), "json": str(root / "study.json"),
             "budget_plot": str(root / "metric_vs_budget.png"), "compute_plot": str(root / "metric_vs_compute.png"),
             "per_class_plot": str(root / "rare_findings.png")}
    _plot_budget(arms, primary, Path(files["budget_plot"]))
    _plot_compute(arms, primary, Path(files["compute_plot"]))
    gains = _per_class(arms, baseline, rare)
    _plot_per_class(gains, Path(files["per_class_plot"]))
    scaling: dict[str, Any] = {}
    points = [ScalingPoint.from_estimate(r.spec.fraction * n_train, r.metrics[primary], r.flops, r.spec.label)
              for r in runs if r.spec.kind in ("reference", "baseline", "scaling") and primary in r.metrics
              and r.metrics[primary].defined]
    try:
        rep = scaling_report(points, str(root / "scaling"), metric=primary, n_boot=n_boot, seed=seed,
                             axes=["samples"])
        fit = rep.fits["samples"]
        scaling = {"a": fit.a, "b": fit.b, "c": fit.c, "x0": fit.x0, "rmse": fit.rmse,
                   "predictions": [{"factor": p.factor, "value": p.value.to_dict(), "gain": p.gain.to_dict()}
                                   for p in fit.predictions], "files": rep.files}
    except ConfigError as err:  # e.g. a flat or noisy metric the law cannot follow: say so in the report
        scaling = {"error": str(err)}
    report = StudyReport(str(root), primary, arms, paired, _goals(arms, primary, baseline), scaling, files)
    report.goals["per_class_gains"] = gains
    Path(files["json"]).write_text(json.dumps(report.to_dict(), indent=2))
    Path(files["markdown"]).write_text(_markdown(report, baseline, n_train, title))
    return report


def _markdown(rep: StudyReport, baseline: str, n_train: int, title: str) -> str:
    arms = list(rep.arms.values())
    metrics = sorted({m for a in arms for m in a.mean if _headline(m)})
    lines = [f"# Data-efficiency study{': ' + title if title else ''}", "",
             f"{len(arms)} arms, seeds {arms[0].seeds}, {n_train} training images in the full train split. Cells: "
             "mean over seeds ± seed sd [mean of the per-seed 95 % bootstrap CIs].", "",
             "| arm | kind | budget | steps | train FLOPs | " + " | ".join(metrics) + " |",
             "|" + "---|" * (5 + len(metrics))]
    for a in arms:
        lines.append(f"| {a.arm} | {a.kind} | {a.budget:g} | {a.steps:g} | {a.flops:.3g} | "
                     + " | ".join(_fmt(a, m) for m in metrics) + " |")
    for ref, per_arm in rep.paired.items():
        lines += ["", f"## Paired tests against {ref} (seed-averaged, patient bootstrap)", "",
                  "| arm | metric | difference [95 % CI] | p |", "|---|---|---|---|"]
        for arm, tests in per_arm.items():
            for m, t in tests.items():
                d = Estimate.from_dict(t["diff"])
                p = t.get("p_value")
                lines.append(f"| {arm} | {m} | {d.format()} | {'–' if p is None else f'{p:.3g}'} |")
    g = rep.goals
    lines += ["", f"## Goals ({rep.primary})", "", "| strategy | gain over random (points) | % of full | "
              "≥ random + 2 | ≥ 98 % of full |", "|---|---|---|---|---|"]
    for arm, v in g.get("per_strategy", {}).items():
        lines.append(f"| {arm} | {v['gain_over_random_points']:+.2f} | {100 * v['fraction_of_full']:.1f} | "
                     f"{'yes' if v['beats_random_by_2_points'] else 'no'} | "
                     f"{'yes' if v['reaches_98pct_of_full'] else 'no'} |")
    frac = g.get("compute_fraction_to_full_metric")
    lines += ["", "Full model's metric reached at "
              + (f"{100 * frac:.0f} % of its compute" if frac is not None else "no smaller compute")
              + f" (goal ≤ 30 %: {'met' if g.get('full_reached_at_30pct_compute') else 'not met'})."]
    if rep.scaling.get("error"):
        lines += ["", f"Scaling fit: not available ({rep.scaling['error']})."]
    elif rep.scaling:
        s = rep.scaling
        lines += ["", f"Scaling fit (random subsets + full): {rep.primary} = {s['a']:.4f} - {s['b']:.4f}·(n/"
                  f"{s['x0']:.4g})^-{s['c']:.3f}, RMSE {s['rmse']:.4f}; "
                  + "; ".join(f"{p['factor']:g}x data: gain {Estimate.from_dict(p['gain']).format()}"
                              for p in s["predictions"]) + " (see scaling/scaling.md)."]
    lines += ["", "![metric vs budget](metric_vs_budget.png)", "", "![metric vs compute](metric_vs_compute.png)",
              "", "![rare findings](rare_findings.png)", ""]
    return "\n".join(lines)
