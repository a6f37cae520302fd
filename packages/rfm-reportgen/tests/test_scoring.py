from __future__ import annotations

import math

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from rfm_data.errors import ConfigError
from rfm_reportgen.clinical import UncertainPolicy, clinical_stats, prf
from rfm_reportgen.nlg import compute_nlg_stats, meteor_available, normalize
from rfm_reportgen.scoring import METRIC_ORDER, ScoreConfig, score

FAST = ScoreConfig(n_boot=50, meteor=False)


def test_identical_reports_score_perfectly(iu_findings: list[str]) -> None:
    refs = iu_findings[:6]
    result = score(refs, refs, patient_ids=[f"p{i // 2}" for i in range(6)], config=FAST)
    for name in ("bleu_1", "bleu_4", "rouge_l"):
        assert result.metrics[name].value == pytest.approx(1.0)
    assert result.metrics["ce_f1"].value == pytest.approx(1.0)
    assert result.n == 6 and result.n_patients == 3


def test_bleu_matches_sacrebleu_corpus_score(iu_findings: list[str]) -> None:
    refs, hyps = iu_findings[:8], iu_findings[8:16]
    stats = compute_nlg_stats(hyps, refs, meteor=False)
    expected = BLEU(lowercase=True).corpus_score([normalize(h) for h in hyps], [[normalize(r) for r in refs]])
    assert stats.bleu_score(4, np.arange(8)) == pytest.approx(expected.score / 100)


def test_intervals_bracket_the_value(iu_findings: list[str]) -> None:
    refs, hyps = iu_findings[:12], iu_findings[12:24]
    result = score(hyps, refs, config=ScoreConfig(n_boot=100, meteor=False))
    for name in ("bleu_1", "rouge_l", "cider"):
        est = result.metrics[name]
        assert est.low <= est.value <= est.high and est.high > est.low
    assert 0 < result.metrics["cider"].value < 10


def test_empty_and_missing_texts_have_defined_values(iu_findings: list[str]) -> None:
    refs = [iu_findings[0], "", iu_findings[1], None]
    result = score(["", "anything", iu_findings[1], "x"], refs, config=FAST)
    assert result.n == 2 and result.n_empty_reference == 2 and result.n_empty_prediction == 1
    assert result.per_sample[0]["rouge_l"] == 0.0 and result.per_sample[1]["rouge_l"] == pytest.approx(1.0)
    nothing = score(["a", "b"], ["", "  "], config=FAST)
    assert nothing.n == 0 and all(math.isnan(e.value) for e in nothing.metrics.values())
    assert nothing.notes


def test_very_long_and_odd_outputs_are_scored(iu_findings: list[str]) -> None:
    hyps = ["effusion " * 20000, "\u00e9\u00e8 \u2603 [UNK] ##x \x00", "lungs clear"]
    result = score(hyps, iu_findings[:3], config=FAST)
    assert all(not math.isnan(result.metrics[m].value) for m in ("bleu_1", "rouge_l", "cider"))


def test_bad_input_is_named() -> None:
    with pytest.raises(ConfigError, match="references"):
        score(["a"], ["a", "b"], config=FAST)
    with pytest.raises(ConfigError, match="patient_ids"):
        score(["a"], ["a"], patient_ids=["p", "q"], config=FAST)
    with pytest.raises(ConfigError, match="unknown"):
        score(["a"], ["a"], config=ScoreConfig(metrics=("bleu_9",)))


def test_clinical_efficacy_counts_findings() -> None:
    refs = ["Mild cardiomegaly. Small left pleural effusion.", "No acute cardiopulmonary abnormality."]
    hyps = ["Cardiomegaly. No pleural effusion.", "Possible pneumothorax on the right."]
    stats = clinical_stats(hyps, refs)
    tp, _fp, fn = (int(c.sum()) for c in stats.counts(np.arange(2)))
    assert tp >= 1 and fn >= 1  # cardiomegaly found, the effusion missed
    uncertain = clinical_stats(hyps, refs, uncertain=UncertainPolicy.POSITIVE)
    assert uncertain.predicted.sum() > stats.predicted.sum()  # "possible pneumothorax" now counts
    assert prf(0, 0, 0)[2] != prf(0, 0, 0)[2]  # nan: undefined, not 0


def test_metric_order_is_complete() -> None:
    assert set(METRIC_ORDER) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider",
                                 "ce_precision", "ce_recall", "ce_f1"}


@pytest.mark.slow
@pytest.mark.skipif(not meteor_available(), reason="METEOR needs a Java runtime")
def test_meteor_runs_offline(iu_findings: list[str]) -> None:
    stats = compute_nlg_stats([iu_findings[0], "", "heart size normal"], [iu_findings[0], "x", iu_findings[2]])
    assert stats.meteor[0] > 0.9 and stats.meteor[1] == 0.0 and 0 <= stats.meteor[2] < 0.9
