"""Zero-shot classification (CheXzero style): positive vs negative prompt pairs with template ensembles.

Per observation, the text embeddings of its positive templates are averaged (then re-normalised), likewise
the negative ones; the score is the softmax over the pair of scaled cosine similarities, taken for the
positive side. AUROC per observation and macro (sklearn); uncertain (-1) labels are ignored, an observation
with one label value is reported as undefined.

The first positive template is the wording training used for label-only images
(:func:`rfm_models.batching.label_prompt`, e.g. "chest x-ray with pneumonia, viral"), including the parent
findings the protocol says an observation implies (``protocol.extra["implies"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rfm_data.labels.observations import NO_FINDING
from rfm_eval.protocol import LabelMode, Protocol
from rfm_eval.stats import MetricFn
from rfm_eval.tasks.base import Predictions, Task, TaskContext, TaskOutput, TaskResult, register_task
from rfm_eval.tasks.common import class_counts, classification_metrics, plot_roc, targets
from rfm_models.batching import label_prompt
from rfm_models.model import VisionLanguageModel
from rfm_models.objectives.base import unit

__all__ = ["DEFAULT_IMPLIES", "NEGATIVE_TEMPLATES", "POSITIVE_TEMPLATES", "ZeroShotTask", "prompt_pair"]

POSITIVE_TEMPLATES = ("{}", "findings consistent with {}", "there is {}")
NEGATIVE_TEMPLATES = ("chest x-ray with no {}", "no {}", "no evidence of {}")
# Sub-findings named with their parent, as rfm-data's labelers and the training prompts do.
DEFAULT_IMPLIES = {"Viral": ["Pneumonia"], "Bacterial": ["Pneumonia"], "COVID-19": ["Pneumonia", "Viral"]}
NO_FINDING_PAIR = (["chest x-ray with no finding", "normal chest x-ray", "no acute cardiopulmonary process"],
                   ["chest x-ray with abnormal findings", "abnormal chest x-ray", "acute cardiopulmonary process"])


def prompt_pair(observation: str, protocol: Protocol, model_observations: Sequence[str]) -> tuple[list[str],
                                                                                                    list[str]]:
    """(positive prompts, negative prompts) of ``observation``."""
    custom = protocol.extra.get("prompts", {}).get(observation)
    if custom is not None:
        return list(custom[0]), list(custom[1])
    if observation == NO_FINDING:
        return list(NO_FINDING_PAIR[0]), list(NO_FINDING_PAIR[1])
    implied = protocol.extra.get("implies", DEFAULT_IMPLIES).get(observation, [])
    names = [o for o in model_observations if o in implied] + [observation]
    trained = label_prompt({n: 1 for n in names}, names) or f"chest x-ray with {observation.lower()}"
    term = observation.lower()
    return [trained, *(t.format(term) for t in POSITIVE_TEMPLATES)], [t.format(term) for t in NEGATIVE_TEMPLATES]


@torch.inference_mode()
def _ensemble(model: VisionLanguageModel, prompts: list[str]) -> np.ndarray:
    emb = model.encode_text(prompts).float()
    return unit(emb.mean(dim=0, keepdim=True))[0].cpu().numpy()


@register_task("zeroshot")
class ZeroShotTask(Task):
    """Zero-shot classification of the protocol's observations (needs a vision-language model)."""

    needs_text = True

    def predict(self, ctx: TaskContext) -> TaskOutput:
        feats = ctx.features(ctx.split)
        assert feats.image_emb is not None
        model = ctx.model.vision_language()
        scale = float(model.scale().item())
        protocol = ctx.protocol
        scores, prompts = [], {}
        for obs in protocol.observations:
            pos, neg = prompt_pair(obs, protocol, model.config.observations)
            prompts[obs] = {"positive": pos, "negative": neg}
            logits = scale * (feats.image_emb @ np.stack([_ensemble(model, pos), _ensemble(model, neg)]).T)
            logits -= logits.max(axis=1, keepdims=True)
            prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            scores.append(prob[:, 0])
        score = np.stack(scores, axis=1).astype(np.float32)
        if protocol.mode == LabelMode.MULTI_CLASS:
            score = score / score.sum(axis=1, keepdims=True)  # classes exclusive: one distribution per image
        y = targets(feats, protocol)
        meta: dict[str, Any] = {"classes": list(protocol.observations), "mode": protocol.mode.value}
        details = {"prompts": prompts, "counts": class_counts(y, protocol), "logit_scale": scale}
        return TaskOutput(Predictions(feats.sample_ids, feats.patient_ids, {"y": y, "score": score}, meta), details)

    def metrics(self, predictions: Predictions) -> dict[str, MetricFn]:
        meta = predictions.meta
        return classification_metrics(predictions.arrays["y"], predictions.arrays["score"], meta["classes"],
                                      LabelMode(meta["mode"]))

    def plot(self, predictions: Predictions, result: TaskResult, url: str) -> bool:
        plot_roc(predictions.arrays["y"], predictions.arrays["score"], predictions.meta["classes"],
                 result.headline, url, "zero-shot ROC")
        return True
