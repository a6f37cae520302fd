"""Score generated reports against references: BLEU-1..4, ROUGE-L, METEOR, CIDEr-D and clinical-efficacy
precision / recall / F1, each with a patient-level bootstrap interval (rfm_eval.stats).

Example:
    >>> result = score(["no acute disease."], ["No acute cardiopulmonary disease."], patient_ids=["p1"],
    ...                config=ScoreConfig(n_boot=0, meteor=False))
    >>> round(result.metrics["rouge_l"].value, 2)
    0.75
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rfm_data.errors import ConfigError
from rfm_data.registry import Registry
from rfm_eval.stats import Estimate, bootstrap
from rfm_reportgen.clinical import ClinicalStats, UncertainPolicy, clinical_stats
from rfm_reportgen.nlg import NlgStats, compute_nlg_stats

__all__ = ["METRIC_ORDER", "ScoreConfig", "ScoreResult", "ScoringContext", "metrics", "score"]


@dataclass(frozen=True)
class ScoreConfig:
    """Scoring options.

    Attributes:
        n_boot: bootstrap resamples (0: point values only).
        level: interval coverage.
        seed: resampling seed.
        labeler: rfm-data labeler backend for clinical efficacy.
        uncertain: whether an uncertain mention counts as positive.
        meteor: compute METEOR (starts a Java process, ~20 s on 2 cores).
        metrics: names from the ``metrics`` registry; empty = all.
    """

    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    labeler: str = "rule"
    uncertain: UncertainPolicy = UncertainPolicy.NEGATIVE
    meteor: bool = True
    metrics: tuple[str, ...] = ()


@dataclass
class ScoringContext:
    """What a metric needs: the per-sample statistics of both metric families."""

    nlg: NlgStats
    clinical: ClinicalStats


MetricBuilder = Callable[[ScoringContext], Callable[[np.ndarray], float]]
#: name → (context → metric(idx)). Register a new metric with ``@metrics.register("name")``.
metrics: Registry[Callable[[np.ndarray], float]] = Registry("report metric")


def _register_bleu(order: int) -> None:
    @metrics.register(f"bleu_{order}")
    def _bleu(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
        return lambda idx: ctx.nlg.bleu_score(order, idx)


for _order in (1, 2, 3, 4):
    _register_bleu(_order)


@metrics.register("rouge_l")
def _rouge(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
    return lambda idx: float(ctx.nlg.rouge_l[idx].mean())


@metrics.register("meteor")
def _meteor(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
    return lambda idx: float(ctx.nlg.meteor[idx].mean())


@metrics.register("cider")
def _cider(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
    # IDF fixed to the whole scored set (see rfm_reportgen.nlg): the corpus value is the per-sample mean.
    return lambda idx: float(ctx.nlg.cider[idx].mean())


@metrics.register("ce_precision")
def _ce_precision(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
    return lambda idx: ctx.clinical.micro(idx)[0]


@metrics.register("ce_recall")
def _ce_recall(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
    return lambda idx: ctx.clinical.micro(idx)[1]


@metrics.register("ce_f1")
def _ce_f1(ctx: ScoringContext) -> Callable[[np.ndarray], float]:
    return lambda idx: ctx.clinical.micro(idx)[2]


METRIC_ORDER = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider", "ce_precision",
                "ce_recall", "ce_f1")


@dataclass
class ScoreResult:
    """Every metric with its interval, on the rows that had a reference.

    Attributes:
        system: name of the scored system (e.g. ``generator``, ``retrieval``).
        target: report section scored (``findings``, ``impression``, ``findings_impression``).
        n: rows scored; n_patients: distinct patients among them.
        n_empty_reference: rows dropped because the reference was empty.
        n_empty_prediction: scored rows whose prediction was empty (they score 0).
        metrics: name → Estimate (values 0..1; CIDEr 0..10).
        per_observation: observation → {"precision", "recall", "f1", "support"} (point values).
        notes: why a metric is undefined, and other caveats.
        per_sample: one dict per scored row (sample id, texts, per-sample scores, positive findings).
    """

    system: str
    target: str
    n: int
    n_patients: int
    n_empty_reference: int
    n_empty_prediction: int
    metrics: dict[str, Estimate]
    per_observation: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)
    per_sample: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_samples: bool = False) -> dict[str, Any]:
        """JSON-able summary (nan → None)."""
        out = {k: getattr(self, k) for k in ("system", "target", "n", "n_patients", "n_empty_reference",
                                              "n_empty_prediction", "notes")}
        out["metrics"] = {k: v.to_dict() for k, v in self.metrics.items()}
        out["per_observation"] = {k: {m: (None if isinstance(v, float) and math.isnan(v) else v)
                                       for m, v in d.items()} for k, d in self.per_observation.items()}
        if with_samples:
            out["per_sample"] = self.per_sample
        return out

    def to_json(self) -> str:
        """Summary as JSON text."""
        return json.dumps(self.to_dict(), indent=2)


def _check_inputs(predictions: Sequence[str | None], references: Sequence[str | None],
                  patient_ids: Sequence[str] | None) -> None:
    if len(predictions) != len(references):
        raise ConfigError(f"predictions has {len(predictions)} rows, references {len(references)}: give one "
                          "prediction per reference, aligned by sample")
    if patient_ids is not None and len(patient_ids) != len(references):
        raise ConfigError(f"patient_ids has {len(patient_ids)} rows for {len(references)} references: give one "
                          "patient id per row (or None to resample rows)")


def _clean(texts: Sequence[str | None]) -> list[str]:
    return [t if isinstance(t, str) else "" for t in texts]


def _per_observation(clin: ClinicalStats) -> dict[str, dict[str, float]]:
    idx = np.arange(clin.reference.shape[0])
    out = {}
    for j, name in enumerate(clin.observations):
        support = int(clin.reference[:, j].sum())
        predicted = int(clin.predicted[:, j].sum())
        if support == 0 and predicted == 0:
            continue  # never mentioned on either side: nothing to report
        p, r, f = clin.per_observation(idx, j)
        out[name] = {"precision": p, "recall": r, "f1": f, "support": float(support), "predicted": float(predicted)}
    return out


def _per_sample(sample_ids: Sequence[str], patients: Sequence[str], preds: Sequence[str], refs: Sequence[str],
                ctx: ScoringContext) -> list[dict[str, Any]]:
    cider = ctx.nlg.cider
    names = ctx.clinical.observations
    rows = []
    for i, sid in enumerate(sample_ids):
        meteor = float(ctx.nlg.meteor[i])
        rows.append({"sample_id": sid, "patient_id": patients[i], "prediction": preds[i], "reference": refs[i],
                     "rouge_l": float(ctx.nlg.rouge_l[i]), "meteor": None if math.isnan(meteor) else meteor,
                     "cider": float(cider[i]),
                     "pred_findings": [n for n, v in zip(names, ctx.clinical.predicted[i], strict=True) if v],
                     "ref_findings": [n for n, v in zip(names, ctx.clinical.reference[i], strict=True) if v]})
    return rows


@dataclass
class Prepared:
    """Rows that can be scored (non-empty reference) and their statistics; ``ctx`` is None when none can."""

    ids: list[str]
    patients: list[str]
    preds: list[str]
    refs: list[str]
    n_empty_reference: int
    ctx: ScoringContext | None
    notes: list[str]


def prepare(predictions: Sequence[str | None], references: Sequence[str | None],
            patient_ids: Sequence[str] | None = None, sample_ids: Sequence[str] | None = None,
            config: ScoreConfig | None = None) -> Prepared:
    """Validate, drop rows with an empty reference and compute the per-sample statistics (see :func:`score`)."""
    cfg = config or ScoreConfig()
    _check_inputs(predictions, references, patient_ids)
    unknown = [m for m in cfg.metrics if m not in metrics.names()]
    if unknown:
        raise ConfigError(f"ScoreConfig.metrics: unknown {unknown}; known: {metrics.names()}")
    preds, refs = _clean(predictions), _clean(references)
    keep = [i for i, r in enumerate(refs) if r.strip()]
    ids = [str(s) for s in sample_ids] if sample_ids is not None else [str(i) for i in range(len(refs))]
    patients = [str(patient_ids[i]) for i in keep] if patient_ids is not None else [ids[i] for i in keep]
    preds, refs, ids = [preds[i] for i in keep], [refs[i] for i in keep], [ids[i] for i in keep]
    if not keep:
        return Prepared([], [], [], [], len(references), None,
                        ["no row has a non-empty reference: every metric is undefined"])
    nlg = compute_nlg_stats(preds, refs, meteor=cfg.meteor)
    ctx = ScoringContext(nlg, clinical_stats(preds, refs, cfg.labeler, cfg.uncertain))
    return Prepared(ids, patients, preds, refs, len(references) - len(keep), ctx,
                    [nlg.meteor_note] if nlg.meteor_note else [])


def metric_names(config: ScoreConfig) -> list[str]:
    """The metrics a config asks for, in report order."""
    return list(config.metrics) or list(METRIC_ORDER)


def result_of(prep: Prepared, estimates: dict[str, Estimate], system: str, target: str) -> ScoreResult:
    """Assemble a :class:`ScoreResult` from prepared rows and estimates."""
    if prep.ctx is None:
        return ScoreResult(system, target, 0, 0, prep.n_empty_reference, 0, estimates, {}, list(prep.notes))
    return ScoreResult(system, target, len(prep.refs), len(set(prep.patients)), prep.n_empty_reference,
                       sum(1 for p in prep.preds if not p.strip()), estimates, _per_observation(prep.ctx.clinical),
                       list(prep.notes), _per_sample(prep.ids, prep.patients, prep.preds, prep.refs, prep.ctx))


def score(predictions: Sequence[str | None], references: Sequence[str | None],
          patient_ids: Sequence[str] | None = None, sample_ids: Sequence[str] | None = None,
          config: ScoreConfig | None = None, system: str = "system", target: str = "findings") -> ScoreResult:
    """Score ``predictions`` against ``references`` (aligned row by row).

    Rows with an empty reference cannot be scored and are dropped (counted in ``n_empty_reference``); empty
    predictions score 0. With no scorable row every metric is ``nan`` (undefined), never an exception.

    Args:
        predictions: generated reports.
        references: reference reports (same order).
        patient_ids: one patient per row → patient-level bootstrap; None resamples rows.
        sample_ids: row ids kept in ``per_sample`` (default ``"0"``, ``"1"``, ...).
        config: :class:`ScoreConfig`.
        system: name recorded in the result.
        target: report section scored, recorded in the result (results of different targets do not compare).
    """
    cfg = config or ScoreConfig()
    prep = prepare(predictions, references, patient_ids, sample_ids, cfg)
    names = metric_names(cfg)
    if prep.ctx is None:
        nan = Estimate(float("nan"), float("nan"), float("nan"), cfg.level, 0)
        return result_of(prep, dict.fromkeys(names, nan), system, target)
    ctx = prep.ctx
    estimates = {name: bootstrap(metrics.create(name, ctx=ctx), len(prep.refs), groups=prep.patients,
                                 n_boot=cfg.n_boot, seed=cfg.seed, level=cfg.level) for name in names}
    return result_of(prep, estimates, system, target)
