"""Evaluate prediction sets side by side: every metric with its interval per system, the paired difference
of each system against the first (same bootstrap resamples), and JSON + Markdown + PNG outputs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_eval.stats import Estimate, PairedEstimate, paired_bootstrap
from rfm_reportgen.predict import Prediction, align
from rfm_reportgen.scoring import ScoreConfig, ScoreResult, metric_names, metrics, prepare, result_of, score

__all__ = ["Evaluation", "evaluate", "write_evaluation"]


@dataclass
class Evaluation:
    """Scores of each system; ``paired[system][metric]`` compares ``system`` with the first (the baseline).

    Attributes:
        results: one :class:`ScoreResult` per system, the baseline first.
        paired: system → metric → paired estimate (diff = system - baseline).
        config: the scoring options.
    """

    results: list[ScoreResult]
    paired: dict[str, dict[str, PairedEstimate]] = field(default_factory=dict)
    config: ScoreConfig = field(default_factory=ScoreConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        cfg = {k: (v.value if hasattr(v, "value") else v) for k, v in self.config.__dict__.items()}
        return {"config": cfg, "results": [r.to_dict() for r in self.results],
                "paired": {s: {m: e.to_dict() for m, e in d.items()} for s, d in self.paired.items()}}

    def to_markdown(self) -> str:
        """A metric x system table (value [CI]) plus the paired differences against the baseline."""
        names = list(self.results[0].metrics)
        head = "| metric | " + " | ".join(r.system for r in self.results) + " |"
        lines = [head, "|---|" + "---:|" * len(self.results)]
        lines += [f"| {m} | " + " | ".join(r.metrics[m].format() for r in self.results) + " |" for m in names]
        for system, diffs in self.paired.items():
            lines += ["", f"{system} - {self.results[0].system} (paired bootstrap, patient level):", "",
                      "| metric | diff [CI] | p |", "|---|---:|---:|"]
            lines += [f"| {m} | {d.diff.format()} | {_p(d.p_value)} |" for m, d in diffs.items()]
        r0 = self.results[0]
        lines += ["", f"target: {r0.target}; n = {r0.n} reports of {r0.n_patients} patients; "
                      f"{int(self.config.level * 100)} % intervals from {self.config.n_boot} patient-level resamples."]
        return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3f}"


def _check_targets(systems: Sequence[Sequence[Prediction]]) -> None:
    targets = {p.target for preds in systems for p in preds}
    if len(targets) > 1:
        raise ConfigError(f"prediction sets score different targets {sorted(targets)}: results are not comparable")


def evaluate(systems: Sequence[Sequence[Prediction]], config: ScoreConfig | None = None) -> Evaluation:
    """Score each prediction set (the first is the baseline) on the samples all of them share."""
    cfg = config or ScoreConfig()
    if not systems or not all(systems):
        raise ConfigError("evaluate needs at least one non-empty prediction set")
    _check_targets(systems)
    base = list(systems[0])
    for other in systems[1:]:
        base, _ = align(base, other)
    sets = [align(base, s)[1] for s in systems]
    preps = [prepare([p.prediction for p in s], [p.reference for p in s], [p.patient_id for p in s],
                     [p.sample_id for p in s], cfg) for s in sets]
    if preps[0].ctx is None or len(sets) == 1:
        names = [s[0].system for s in sets]
        return Evaluation([score([p.prediction for p in s], [p.reference for p in s], [p.patient_id for p in s],
                                 [p.sample_id for p in s], cfg, n, s[0].target) for s, n in zip(sets, names,
                                                                                              strict=True)],
                          config=cfg)
    return _paired(sets, preps, cfg)


def _paired(sets: list[list[Prediction]], preps: list[Any], cfg: ScoreConfig) -> Evaluation:
    names = metric_names(cfg)
    base_fns = {m: metrics.create(m, ctx=preps[0].ctx) for m in names}
    paired: dict[str, dict[str, PairedEstimate]] = {}
    estimates: list[dict[str, Estimate]] = [{} for _ in sets]
    for k in range(1, len(sets)):
        system = sets[k][0].system
        paired[system] = {m: paired_bootstrap(base_fns[m], metrics.create(m, ctx=preps[k].ctx),
                                              len(preps[0].refs), groups=preps[0].patients, n_boot=cfg.n_boot,
                                              seed=cfg.seed, level=cfg.level) for m in names}
        estimates[k] = {m: e.b for m, e in paired[system].items()}
        estimates[0] = {m: e.a for m, e in paired[system].items()}  # same resamples for every pair
    results = [result_of(p, e, s[0].system, s[0].target) for p, e, s in zip(preps, estimates, sets, strict=True)]
    return Evaluation(results, paired, cfg)


def write_evaluation(evaluation: Evaluation, out_dir: str) -> dict[str, str]:
    """Write ``scores.json``, ``scores.md``, ``per_sample-<system>.jsonl`` and ``scores.png`` into ``out_dir``.

    Returns:
        name → URL of each file written.
    """
    files = {"json": io.join(out_dir, "scores.json"), "markdown": io.join(out_dir, "scores.md"),
             "plot": io.join(out_dir, "scores.png")}
    io.write_text(files["json"], json.dumps(evaluation.to_dict(), indent=2, default=str))
    io.write_text(files["markdown"], evaluation.to_markdown())
    for r in evaluation.results:
        url = io.join(out_dir, f"per_sample-{r.system}.jsonl")
        io.write_text(url, "".join(json.dumps(row) + "\n" for row in r.per_sample))
        files[f"per_sample_{r.system}"] = url
    io.write_bytes(files["plot"], plot_scores(evaluation.results))
    return files


def plot_scores(results: Sequence[ScoreResult]) -> bytes:
    """PNG bytes: one bar per metric and system with its interval (CIDEr on its own axis: 0..10 scale)."""
    import io as _pyio

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m for m in results[0].metrics if m != "cider"]
    fig, (ax, ax_c) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [len(names), 1.5]})
    width = 0.8 / len(results)
    for k, r in enumerate(results):
        for axis, keys in ((ax, names), (ax_c, ["cider"] if "cider" in r.metrics else [])):
            est = [r.metrics[m] for m in keys]
            x = np.arange(len(keys)) + k * width
            vals = np.array([0.0 if math.isnan(e.value) else e.value for e in est])
            err = np.array([[0.0 if math.isnan(e.low) else max(0.0, e.value - e.low) for e in est],
                            [0.0 if math.isnan(e.high) else max(0.0, e.high - e.value) for e in est]])
            axis.bar(x, vals, width, yerr=err, capsize=2, label=r.system)
            axis.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=30, ha="right")
    ax.set_ylabel("score (95 % bootstrap CI)")
    ax.set_title(f"report generation, target {results[0].target}, n = {results[0].n}")
    ax_c.set_title("CIDEr-D")
    ax.legend()
    fig.tight_layout()
    buffer = _pyio.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
