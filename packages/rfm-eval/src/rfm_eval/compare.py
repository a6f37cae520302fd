"""``compare(runs, out)``: headline table across evaluation runs and paired bootstraps against the first.

Each task's saved predictions are aligned on sample id (the rows both runs scored), the task's own metric
functions are rebuilt from them, and :func:`rfm_eval.stats.paired_bootstrap` resamples the same patients for
both runs: the difference's CI is much tighter than comparing two independent CIs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_eval.jsonutil import dumps
from rfm_eval.plots import figure, save_figure
from rfm_eval.stats import Estimate, PairedEstimate, paired_bootstrap
from rfm_eval.tasks import Predictions, TaskResult, TaskStatus, tasks
from rfm_eval.tasks.base import PREDICTIONS_NAME

__all__ = ["CompareResult", "compare", "load_run"]


@dataclass
class CompareResult:
    """What :func:`compare` wrote.

    Attributes:
        out: output folder URL.
        names: run labels, reference first.
        headline: task → metric → run label → estimate.
        paired: task → metric → run label (not the reference) → paired estimate (run - reference).
        skipped: task → why the reference run skipped it (e.g. no reports in the split for retrieval).
    """

    out: str
    names: list[str]
    headline: dict[str, dict[str, dict[str, Estimate]]] = field(default_factory=dict)
    paired: dict[str, dict[str, dict[str, PairedEstimate]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """Markdown table: one row per task/metric, one column per run, then each run's paired difference."""
        others = self.names[1:]
        head = ["task", "metric", *self.names, *(f"{o} − {self.names[0]} (p)" for o in others)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for task, metrics in self.headline.items():
            for metric, per_run in metrics.items():
                cells = [per_run[n].format() if n in per_run else "–" for n in self.names]
                for o in others:
                    p = self.paired.get(task, {}).get(metric, {}).get(o)
                    cells.append("–" if p is None else f"{p.diff.format()} ({_p_text(p)})")
                lines.append("| " + " | ".join([task, metric, *cells]) + " |")
        lines += ["", *(f"- {task}: skipped ({reason})" for task, reason in self.skipped.items())]
        return "\n".join(lines) + "\n"


def _p_text(p: PairedEstimate) -> str:
    # A bootstrap p-value of 0 only means "below the resolution 1 / resamples".
    if p.p_value == 0 and p.diff.n_boot:
        return f"p<{1 / p.diff.n_boot:.3g}"
    return f"p={p.p_value:.3g}"


def load_run(run: str) -> dict[str, Any]:
    """The ``results.json`` of an evaluation run folder (ConfigError when it is not one)."""
    url = io.join(run, "results.json")
    if not io.exists(url):
        raise ConfigError(f"{run} is not an rfm-eval run folder (no results.json): pass folders written by "
                          "`rfm-eval run ... --out DIR`")
    data: dict[str, Any] = json.loads(io.read_text(url))
    return data


def _align(ref: Predictions, other: Predictions) -> tuple[Predictions, Predictions]:
    pos = {s: i for i, s in enumerate(other.sample_ids)}
    rows = [i for i, s in enumerate(ref.sample_ids) if s in pos]
    if not rows:
        raise ConfigError("two runs share no evaluated samples: compare runs on the same dataset and split")
    return ref.take(np.array(rows)), other.take(np.array([pos[ref.sample_ids[i]] for i in rows]))


def _paired(task: str, ref_run: str, run: str, n_boot: int, seed: int) -> dict[str, PairedEstimate]:
    impl = tasks.create(task)
    ref, other = _align(Predictions.load(io.join(ref_run, task, PREDICTIONS_NAME)),
                        Predictions.load(io.join(run, task, PREDICTIONS_NAME)))
    fa, fb = impl.metrics(ref), impl.metrics(other)
    groups = np.asarray(ref.groups)
    with threadpool_limits(1):
        return {m: paired_bootstrap(fa[m], fb[m], len(ref), groups, n_boot=n_boot, seed=seed)
                for m in fa if m in fb}


def _ok_tasks(data: dict[str, Any]) -> dict[str, TaskResult]:
    results = {k: TaskResult.from_dict(v) for k, v in data["tasks"].items()}
    return {k: v for k, v in results.items() if v.status == TaskStatus.OK}


def compare(runs: Sequence[str], out: str, names: Sequence[str] | None = None, n_boot: int = 1000,
            seed: int = 0) -> CompareResult:
    """Compare evaluation runs (the first is the reference); write compare.json / .md / .png to ``out``.

    Raises:
        ConfigError: fewer than 2 runs, a folder that is not a run, names of the wrong length.
    """
    if len(runs) < 2:
        raise ConfigError("compare needs at least 2 run folders (the first is the reference)")
    loaded = [load_run(r) for r in runs]
    labels = list(names) if names else [d["model"].get("name", r) for d, r in zip(loaded, runs, strict=True)]
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise ConfigError(f"names {labels} must be {len(runs)} distinct labels, one per run")
    result = CompareResult(out, labels)
    result.skipped = {k: str(v.get("reason", "")) for k, v in loaded[0]["tasks"].items()
                      if v.get("status") == TaskStatus.SKIPPED.value}
    ok = [_ok_tasks(d) for d in loaded]
    for task in ok[0]:
        result.headline[task] = {}
        for label, per in zip(labels, ok, strict=True):
            for metric, est in (per[task].headline.items() if task in per else []):
                result.headline[task].setdefault(metric, {})[label] = est
        if task not in tasks:
            continue
        for label, run, per in zip(labels[1:], runs[1:], ok[1:], strict=True):
            if task in per:
                for metric, p in _paired(task, runs[0], run, n_boot, seed).items():
                    result.paired.setdefault(task, {}).setdefault(metric, {})[label] = p
    _write(result)
    return result


def _write(result: CompareResult) -> None:
    payload = {"names": result.names,
               "headline": {t: {m: {n: e.to_dict() for n, e in r.items()} for m, r in ms.items()}
                            for t, ms in result.headline.items()},
               "paired": {t: {m: {n: p.to_dict() for n, p in r.items()} for m, r in ms.items()}
                          for t, ms in result.paired.items()},
               "skipped": result.skipped}
    io.write_text(io.join(result.out, "compare.json"), dumps(payload))
    io.write_text(io.join(result.out, "compare.md"), "# rfm-eval compare\n\n" + result.table())
    _plot(result, io.join(result.out, "compare.png"))


def _plot(result: CompareResult, url: str) -> None:
    """Forest plot of the summary metrics (per-class rows left out), one marker per run."""
    rows = [(t, m) for t, ms in result.headline.items() for m in ms if "[" not in m and "median_rank" not in m]
    fig, ax = figure(7.0, max(2.5, 0.32 * len(rows) + 1))
    for j, name in enumerate(result.names):
        for i, (t, m) in enumerate(rows):
            est = result.headline[t][m].get(name)
            if est is None or not est.defined:
                continue
            y = i + (j - (len(result.names) - 1) / 2) * 0.2
            ax.errorbar(est.value, y, xerr=[[max(0, est.value - est.low)], [max(0, est.high - est.value)]]
                        if est.n_boot else None, fmt="o", color=f"C{j}", capsize=2, label=name if i == 0 else None)
    ax.set_yticks(range(len(rows)), [f"{t}: {m}" for t, m in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="value (95% CI)", title="rfm-eval compare")
    ax.legend(fontsize=7)
    save_figure(fig, url)
