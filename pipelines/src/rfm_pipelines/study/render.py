"""The study report's page and plots: ``study.md`` (one readable page) and the PNGs it links.

Kept apart from :mod:`rfm_pipelines.study.report` (the numbers) so the statistics import no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rfm_eval.stats import Estimate
from rfm_pipelines.study.report import ArmSummary, SplitReport, StudyReport

__all__ = ["render"]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_budget(arms: Mapping[str, ArmSummary], primary: str, split: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    random_arms = sorted((a for a in arms.values() if a.kind in ("reference", "baseline", "scaling")
                          and primary in a.mean), key=lambda a: a.budget)
    if random_arms:
        ax.errorbar([a.budget for a in random_arms], [a.mean[primary] for a in random_arms],
                    yerr=[a.sd[primary] for a in random_arms], fmt="-o", color="black", capsize=3,
                    label="random subsets (mean ± seed sd)")
        ax.fill_between([a.budget for a in random_arms], [a.low.get(primary, math.nan) for a in random_arms],
                        [a.high.get(primary, math.nan) for a in random_arms], color="grey", alpha=0.2,
                        label="random: mean 95% bootstrap CI")
    for i, a in enumerate(a for a in arms.values() if a.kind == "strategy" and primary in a.mean):
        ax.errorbar([a.budget * (1 + 0.04 * (i + 1))], [a.mean[primary]], yerr=[a.sd[primary]], fmt="s",
                    color=f"C{i}", capsize=3, label=a.arm)
    ax.set(xscale="log", xlabel="budget (fraction of the train split; online arm at its selection ratio)",
           ylabel=primary, title=f"metric vs budget (equal steps), {split}")
    ax.legend(fontsize=7)
    _save(fig, path)


def _plot_compute(arms: Mapping[str, ArmSummary], primary: str, split: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, a in enumerate(a for a in arms.values() if primary in a.mean and a.flops > 0):
        ax.errorbar([a.flops], [a.mean[primary]], yerr=[a.sd[primary]], fmt="o", color=f"C{i % 10}", capsize=3,
                    label=a.arm)
    full = arms.get("full")
    if full is not None and primary in full.mean:
        ax.axhline(full.mean[primary], color="black", lw=0.8, ls="--", label="full model")
    ax.set(xscale="log", xlabel="training FLOPs (mean over seeds)", ylabel=primary,
           title=f"metric vs compute, {split}")
    ax.legend(fontsize=7)
    _save(fig, path)


def _plot_per_class(gains: Mapping[str, Mapping[str, float]], path: Path) -> None:
    metrics = sorted({m for g in gains.values() for m in g})
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(metrics) + 1)))
    width = 0.8 / max(1, len(gains))
    for i, (arm, g) in enumerate(gains.items()):
        ax.barh(np.arange(len(metrics)) + i * width, [g.get(m, 0.0) for m in metrics], height=width, label=arm)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(metrics)) + width * (len(gains) - 1) / 2, metrics, fontsize=7)
    ax.set(xlabel="AUROC gain over random at the same budget (mean over seeds)", title="rare findings")
    ax.legend(fontsize=7)
    _save(fig, path)


def _plots(rep: StudyReport, root: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for i, (name, s) in enumerate(rep.splits.items()):
        suffix = "" if i == 0 else f"_{name}"  # the primary split keeps the historical file names
        files[f"budget_plot{suffix}"] = str(root / f"metric_vs_budget{suffix}.png")
        files[f"compute_plot{suffix}"] = str(root / f"metric_vs_compute{suffix}.png")
        _plot_budget(s.arms, rep.primary, name, Path(files[f"budget_plot{suffix}"]))
        _plot_compute(s.arms, rep.primary, name, Path(files[f"compute_plot{suffix}"]))
    files["per_class_plot"] = str(root / "rare_findings.png")
    _plot_per_class(rep.goals.get("per_class_gains", {}), Path(files["per_class_plot"]))
    return files


def _fmt(s: ArmSummary, m: str) -> str:
    if m not in s.mean:
        return "–"
    ci = f" [{s.low[m]:.3f}, {s.high[m]:.3f}]" if math.isfinite(s.low.get(m, math.nan)) else ""
    return f"{s.mean[m]:.3f} ± {s.sd[m]:.3f}{ci}"


def _diff(test: Mapping[str, Any] | None) -> str:
    """``+0.012 [-0.004, 0.027] p=0.14`` for a paired test, ``–`` where there is none."""
    if not test:
        return "–"
    d, p = Estimate.from_dict(test["diff"]), test.get("p_value")
    return f"{d.value:+.3f} [{d.low:.3f}, {d.high:.3f}] {_p_text(p, d.n_boot)}"


def _p_text(p: float | None, n_boot: int) -> str:
    """A bootstrap p of 0 only says that no resample crossed zero: p < 1 / n_boot."""
    if p is None:
        return "p=–"
    return f"p<{1 / n_boot:.2g}" if p == 0 and n_boot > 0 else f"p={p:.2g}"


# What the page shows (the primary metric first); every other metric is in study.json.
PAGE_METRICS = ("zeroshot.auroc_macro", "linear_probe.auroc_macro", "knn.auroc_macro", "retrieval.i2t_R@10",
                "retrieval.t2i_R@10", "segmentation.dice_")


def _page_metrics(names: Iterable[str], primary: str) -> list[str]:
    shown = {m for m in names if m == primary or m.startswith(PAGE_METRICS)}
    return sorted(shown, key=lambda m: (m != primary, m))


def _headline_table(s: SplitReport, primary: str) -> list[str]:
    arms = list(s.arms.values())
    metrics = _page_metrics({m for a in arms for m in a.mean}, primary)
    lines = ["| arm | kind | budget | steps | train FLOPs | " + " | ".join(metrics) + " |",
             "|" + "---|" * (5 + len(metrics))]
    lines += [f"| {a.arm} | {a.kind} | {a.budget:g} | {a.steps:g} | {a.flops:.3g} | "
              + " | ".join(_fmt(a, m) for m in metrics) + " |" for a in arms]
    return lines


def _paired_table(paired: Mapping[str, Mapping[str, Mapping[str, Any]]], ref: str, primary: str) -> list[str]:
    tests = paired.get(ref, {})
    metrics = _page_metrics({m for t in tests.values() for m in t}, primary)
    if not metrics:
        return []
    lines = [f"Paired tests against {ref} (arm − {ref}, seed-averaged, patient bootstrap):", "",
             "| arm | " + " | ".join(metrics) + " |", "|" + "---|" * (1 + len(metrics))]
    lines += [f"| {arm} | " + " | ".join(_diff(t.get(m)) for m in metrics) + " |" for arm, t in tests.items()]
    return [*lines, ""]


def _goal_table(rep: StudyReport) -> list[str]:
    lines = [f"## Goals ({rep.primary}, checked on every split)", "",
             "| split | strategy | gain over random (points) | % of full | ≥ random + 2 | ≥ 98 % of full |",
             "|---|---|---|---|---|---|"]
    yes = {True: "yes", False: "no"}
    for name, s in rep.splits.items():
        for arm, v in s.goals.get("per_strategy", {}).items():
            lines.append(f"| {name} | {arm} | {v['gain_over_random_points']:+.2f} | {100 * v['fraction_of_full']:.1f}"
                         f" | {yes[v['beats_random_by_2_points']]} | {yes[v['reaches_98pct_of_full']]} |")
    lines += ["", "Full model's metric at ≤ 30 % of its compute (shortened runs: compute share, metric):", ""]
    for name, s in rep.splits.items():
        runs = ", ".join(f"{arm} ({100 * v['compute_fraction']:.0f} %, {v['value']:.3f}"
                         f"{', reaches full' if v['reaches_full'] else ''})"
                         for arm, v in s.goals.get("compute_arms", {}).items()) or "no shortened runs"
        met = "met" if s.goals.get("full_reached_at_30pct_compute") else "not met"
        lines.append(f"- {name}: {met}; {runs}.")
    return lines


def _domain_table(s: SplitReport, primary: str, baseline: str) -> list[str]:
    if not s.domains:
        return []
    metrics = sorted({m for d in s.domains.values() for v in d["arms"].values() for m in v},
                     key=lambda m: (m != primary, m))
    lines = [f"### Per source dataset ({s.split}): value [95 % CI]; Δ vs {baseline or 'random'} / vs full", "",
             "| domain (n) | arm | " + " | ".join(metrics) + " |", "|" + "---|" * (2 + len(metrics))]
    for name, d in s.domains.items():
        for arm, values in d["arms"].items():
            if s.arms[arm].kind not in ("reference", "baseline", "strategy"):
                continue  # the scaling / compute arms answer other questions: in study.json only
            cells = []
            for m in metrics:
                v = Estimate.from_dict(values[m]) if m in values else None
                vs_rand = _short(d["paired"].get(baseline, {}).get(arm, {}).get(m))
                vs_full = _short(d["paired"].get("full", {}).get(arm, {}).get(m))
                cells.append(f"{v.format() if v else '–'}; {vs_rand} / {vs_full}")
            lines.append(f"| {name} ({d['n']}) | {arm} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _short(test: Mapping[str, Any] | None) -> str:
    if not test:
        return "–"
    p = test.get("p_value")
    return f"{Estimate.from_dict(test['diff']).value:+.3f}{'*' if p is not None and p < 0.05 else ''}"


def _scaling_lines(rep: StudyReport) -> list[str]:
    s = rep.scaling
    if s.get("error"):
        return ["", f"Scaling fit: not available ({s['error']})."]
    if not s:
        return []
    return ["", f"Scaling fit (random subsets + full, primary split): {rep.primary} = {s['a']:.4f} - {s['b']:.4f}"
            f"·(n/{s['x0']:.4g})^-{s['c']:.3f}, RMSE {s['rmse']:.4f}; "
            + "; ".join(f"{p['factor']:g}x data: gain {Estimate.from_dict(p['gain']).format()}"
                        for p in s["predictions"]) + " (see scaling/scaling.md)."]


def markdown(rep: StudyReport, baseline: str, n_train: int, title: str) -> str:
    """The report page: goals on every split, then per split the headline, paired and per-domain tables."""
    main = next(iter(rep.splits.values()))
    arms = list(main.arms.values())
    lines = [f"# Data-efficiency study{': ' + title if title else ''}", "",
             f"{len(arms)} arms, seeds {arms[0].seeds}, {n_train} training images in the full train split; "
             f"evaluated on {', '.join(rep.splits)} (primary: {main.split}). Cells: mean over seeds ± seed sd "
             "[mean of the per-seed 95 % bootstrap CIs]. Paired cells: difference [95 % CI] p; * p < 0.05. "
             "The page shows the headline metrics; every metric and test is in study.json.", "",
             *_goal_table(rep)]
    for s in rep.splits.values():
        lines += ["", f"## Split {s.split}", "", *_headline_table(s, rep.primary), ""]
        for ref in (baseline, "full"):
            lines += _paired_table(s.paired, ref, rep.primary) if ref else []
        lines += _domain_table(s, rep.primary, baseline)
    lines += _scaling_lines(rep)
    lines += ["", "Plots: " + ", ".join(f"[{Path(f).stem}]({Path(f).name})" for k, f in rep.files.items()
                                         if k.endswith("plot") or "_plot_" in k), ""]
    return "\n".join(lines)


def render(rep: StudyReport, baseline: str, n_train: int, title: str) -> dict[str, str]:
    """Draw the plots and write ``study.md`` into ``rep.out``; the files written (``json`` is the caller's)."""
    root = Path(rep.out)
    rep.files = {"markdown": str(root / "study.md"), "json": str(root / "study.json"), **_plots(rep, root)}
    Path(rep.files["markdown"]).write_text(markdown(rep, baseline, n_train, title))
    return rep.files
