"""MUST (GreenRFM): supervision from report-derived labels, then contrastive alignment through one classifier.

Stage 1 trains each encoder on its own with multi-label BCE against the report labels (its own linear
classifier per modality). Stage 2 trains InfoNCE + ½ (BCE image + BCE text), both BCE terms through one
*shared* linear classifier, which ties the two embedding spaces to the same label directions. Uncertain
labels (-1) are masked out of every BCE term. ``dot_product=True`` uses raw dot products of the unnormalised
embeddings as contrastive logits (no temperature), as GreenRFM does.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as nnf

from rfm_data.errors import ConfigError
from rfm_models.objectives.base import Objective, objectives, unit
from rfm_models.objectives.contrastive import clip_per_sample

__all__ = ["MustObjective", "masked_bce_per_sample"]


def masked_bce_per_sample(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE over each sample's known labels (1 / 0); -1 entries are ignored, all-unknown rows give 0."""
    known = (labels >= 0).to(logits.dtype)
    bce = nnf.binary_cross_entropy_with_logits(logits, labels.clamp(min=0).to(logits.dtype), reduction="none")
    return (bce * known).sum(dim=1) / known.sum(dim=1).clamp(min=1.0)


class MustObjective(Objective):
    """GreenRFM's MUST objective.

    Args:
        embed_dim: dimension of the projected embeddings.
        num_labels: number of observations in ``labels``.
        stage: 1 (per-encoder BCE only) or 2 (InfoNCE + ½ shared-classifier BCE).
        dot_product: raw dot-product contrastive logits (else cosine x learned scale).
        bce_weight: weight of the BCE half-sum in stage 2 (GreenRFM: 0.5).
    """

    needs_labels = True

    def __init__(self, embed_dim: int, num_labels: int, stage: int = 2, dot_product: bool = False,
                 bce_weight: float = 0.5) -> None:
        super().__init__()
        if stage not in (1, 2):
            raise ConfigError(f"MUST stage must be 1 or 2, got {stage}")
        if num_labels < 1:
            raise ConfigError("MUST needs num_labels >= 1 (the model passes len(observations))")
        self.stage, self.dot_product, self.bce_weight = stage, dot_product, bce_weight
        self.image_classifier = nn.Linear(embed_dim, num_labels)
        self.text_classifier = nn.Linear(embed_dim, num_labels)
        self.classifier = nn.Linear(embed_dim, num_labels)
        # DDP refuses parameters that never get a gradient. The other stage's classifiers stay in the state dict
        # (a stage-1 checkpoint then loads into stage 2 as is) but are frozen, so DDP does not track them.
        for idle in (self.classifier,) if stage == 1 else (self.image_classifier, self.text_classifier):
            idle.requires_grad_(False)

    def per_sample(self, image: Tensor, text: Tensor, scale: Tensor, labels: Tensor | None,
                   label_ids: Tensor | None) -> dict[str, Tensor]:
        assert labels is not None  # checked in forward
        if not self.dot_product:
            image, text = unit(image), unit(text)
        if self.stage == 1:
            bce_image = masked_bce_per_sample(self.image_classifier(image), labels)
            bce_text = masked_bce_per_sample(self.text_classifier(text), labels)
            # The two terms train disjoint encoders, so their sum trains each one as if alone.
            return {"per_sample_loss": bce_image + bce_text, "bce_image": bce_image, "bce_text": bce_text}
        logits = image @ text.t() if self.dot_product else scale * image @ text.t()
        contrastive = clip_per_sample(logits)
        bce_image = masked_bce_per_sample(self.classifier(image), labels)
        bce_text = masked_bce_per_sample(self.classifier(text), labels)
        total = contrastive + self.bce_weight * (bce_image + bce_text)
        return {"per_sample_loss": total, "contrastive": contrastive, "bce_image": bce_image, "bce_text": bce_text}


@objectives.register("must")
def _must(embed_dim: int = 512, num_labels: int = 14, stage: int = 2, dot_product: bool = False,
          bce_weight: float = 0.5) -> Objective:
    return MustObjective(embed_dim, num_labels, stage, dot_product, bce_weight)
