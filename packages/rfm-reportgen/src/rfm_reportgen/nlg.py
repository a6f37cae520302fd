"""Natural-language metrics from maintained packages, split into per-sample statistics so that a bootstrap
can recompute each *corpus* metric on every resample without re-tokenising.

* BLEU-1..4: sacrebleu (``13a`` tokenisation, lowercased, its default ``exp`` smoothing). Corpus BLEU is a
  function of summed per-segment n-gram counts: the counts are extracted once, summed per resample.
* CIDEr-D: pycocoevalcap's ``CiderScorer`` (n=4, sigma=6). Its corpus value *is* the mean of the per-sample
  scores, with document frequencies (IDF) from all references of the scored set. The bootstrap keeps those
  frequencies fixed (the IDF describes the reference corpus, not the system's sampling variability) and
  resamples the per-sample scores: recomputing IDF per resample in pycocoevalcap's pure Python costs ~0.3 s
  per resample on 113 reports here (10 minutes for 2 x 1,000 resamples). :meth:`NlgStats.cider_score`
  still recomputes it on given rows when asked.
* ROUGE-L: Google's ``rouge-score`` (LCS F-measure, no stemming), mean over samples.
* METEOR 1.5: the reference Java implementation bundled with pycocoevalcap (needs a ``java`` on PATH), mean
  of the segment scores. Without Java it is reported as undefined (``nan``) with the reason.

Empty hypotheses score 0 on every metric (they are model failures, counted against the model); samples
with an empty reference are dropped before scoring by :func:`rfm_reportgen.scoring.score`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocoevalcap.cider.cider_scorer import CiderScorer, cook_refs, cook_test
from rouge_score import rouge_scorer
from sacrebleu.metrics.bleu import BLEU

__all__ = ["BLEU_ORDERS", "NlgStats", "compute_nlg_stats", "meteor_available", "normalize"]

BLEU_ORDERS = (1, 2, 3, 4)
_TOKEN = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
#: A generated or reference text is cut to this many words before scoring: a degenerate generator can emit
#: megabytes, and METEOR's Java process and CIDEr's n-gram tables would grow with it.
MAX_WORDS = 1000


def normalize(text: str) -> str:
    """Lowercase words and numbers joined by single spaces (punctuation dropped, as the COCO tokenizer does)."""
    return " ".join(_TOKEN.findall((text or "").lower())[:MAX_WORDS])


def meteor_available() -> bool:
    """Whether METEOR can run here (it is the reference Java implementation)."""
    return shutil.which("java") is not None


@dataclass
class NlgStats:
    """Per-sample statistics from which every NLG metric of any subset of rows is computed.

    Attributes:
        bleu: for each order n, an ``(N, 2 + 2n)`` array of sacrebleu segment statistics.
        cider_test: cooked hypothesis n-grams per sample (pycocoevalcap format).
        cider_refs: cooked reference n-grams per sample.
        cider: CIDEr-D per sample, IDF from all rows.
        rouge_l: ROUGE-L F-measure per sample.
        meteor: METEOR per sample (nan when Java is missing).
        meteor_note: why METEOR is undefined, or "".
    """

    bleu: dict[int, np.ndarray]
    cider_test: list[Any]
    cider_refs: list[Any]
    rouge_l: np.ndarray
    meteor: np.ndarray
    meteor_note: str
    cider: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.cider.size == 0 and self.cider_test:
            self.cider = self.cider_per_sample()

    def bleu_score(self, order: int, idx: np.ndarray) -> float:
        """Corpus BLEU-``order`` (0..1) on rows ``idx``."""
        stats = self.bleu[order][idx].sum(axis=0).astype(int).tolist()
        return float(_bleu(order)._compute_score_from_stats(stats).score) / 100.0

    def cider_score(self, idx: np.ndarray) -> float:
        """Corpus CIDEr-D on rows ``idx`` (document frequencies from those rows' references)."""
        scorer = CiderScorer(n=4, sigma=6.0)
        scorer.ctest = [self.cider_test[i] for i in idx]
        scorer.crefs = [self.cider_refs[i] for i in idx]
        value, _ = scorer.compute_score()
        return float(value)

    def cider_per_sample(self) -> np.ndarray:
        """CIDEr-D of each sample against the document frequencies of all rows."""
        scorer = CiderScorer(n=4, sigma=6.0)
        scorer.ctest, scorer.crefs = list(self.cider_test), list(self.cider_refs)
        _, scores = scorer.compute_score()
        return np.asarray(scores, dtype=float)


_BLEU_CACHE: dict[int, BLEU] = {}


def _bleu(order: int) -> BLEU:
    if order not in _BLEU_CACHE:
        _BLEU_CACHE[order] = BLEU(max_ngram_order=order, lowercase=True, tokenize="13a")
    return _BLEU_CACHE[order]


def _bleu_stats(hyps: Sequence[str], refs: Sequence[str]) -> dict[int, np.ndarray]:
    # sacrebleu's own paired bootstrap works from these segment statistics; they are the corpus counts.
    return {n: np.asarray(_bleu(n)._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.int64)
            for n in BLEU_ORDERS}


def _meteor(hyps: Sequence[str], refs: Sequence[str], enabled: bool) -> tuple[np.ndarray, str]:
    scores = np.zeros(len(hyps))
    if not enabled:
        return np.full(len(hyps), np.nan), "METEOR not computed (meteor=False)"
    if not meteor_available():
        return np.full(len(hyps), np.nan), "METEOR needs a Java runtime (`java` on PATH); none was found"
    live = [i for i, h in enumerate(hyps) if h]  # the jar has no defined answer for an empty hypothesis
    if live:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        try:
            _, values = meteor.compute_score({i: [refs[i]] for i in live}, {i: [hyps[i]] for i in live})
        finally:
            del meteor  # stops the Java process
        scores[live] = np.asarray(values, dtype=float)
    return scores, ""


def compute_nlg_stats(hypotheses: Sequence[str], references: Sequence[str], meteor: bool = True) -> NlgStats:
    """Tokenise and count once; see :class:`NlgStats`. References must be non-empty (filter them first).

    Args:
        hypotheses: generated texts.
        references: one reference per hypothesis.
        meteor: run METEOR (a Java process; ~20 s start-up on 2 cores).
    """
    hyps = [normalize(h) for h in hypotheses]
    refs = [normalize(r) for r in references]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = np.array([scorer.score(r, h)["rougeL"].fmeasure if h else 0.0 for h, r in zip(hyps, refs, strict=True)])
    meteor_scores, note = _meteor(hyps, refs, meteor)
    return NlgStats(bleu=_bleu_stats(hyps, refs), cider_test=[cook_test(h) for h in hyps],
                    cider_refs=[cook_refs([r]) for r in refs], rouge_l=rouge, meteor=meteor_scores, meteor_note=note)
