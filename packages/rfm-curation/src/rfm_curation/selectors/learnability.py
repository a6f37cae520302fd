"""Learnability selection (JEST / RHO-LOSS style): train on what the learner has not learnt but could.

The score of a sample is ``learner loss − reference-model loss``: high when the learner still gets it wrong
while a reference model trained on clean held-out data gets it right, i.e. learnable, not yet learnt, and not
noise (noise is hard for the reference too). Each batch keeps its top ``ratio`` by score, or — with a
``temperature`` — a seeded sample without replacement with probabilities ∝ ``exp(score / temperature)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rfm_curation.bands import check_ratio, curation_budget
from rfm_curation.selectors.base import (
    BoolArray,
    FloatArray,
    Id,
    Phase,
    TrackedSelector,
    check_count,
    check_ids,
    check_vector,
    register_selector,
)
from rfm_data.errors import ConfigError


@register_selector("learnability")
class LearnabilitySelector(TrackedSelector):
    """Keeps each batch's most learnable samples (learner loss − reference loss).

    Args:
        ratio: fraction of each batch kept, in ``(0, 1]``; at least one sample per non-empty batch.
        temperature: 0 keeps the top scores; > 0 samples ∝ ``exp(score / temperature)`` without replacement.
        warmup_samples: samples kept unconditionally first (the learner's early losses say little).
        epoch_size: samples per epoch; with ``fix_subset_after_epoch`` the subset is fixed after one.
        fix_subset_after_epoch: freeze the union of kept ids after the first epoch (CheXficient-style
            schedule); otherwise selection continues every epoch (JEST / RHO-LOSS).
        seed: seeds the temperature sampling.
    """

    kind = "learnability"

    def __init__(
        self,
        ratio: float = 0.2,
        temperature: float = 0.0,
        warmup_samples: int = 0,
        epoch_size: int | None = None,
        fix_subset_after_epoch: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(epoch_size)
        self.ratio = check_ratio(ratio)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature >= 0:
            raise ConfigError(f"temperature must be a number ≥ 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.warmup_samples = int(check_count("warmup_samples", warmup_samples) or 0)
        self.fix_subset_after_epoch = bool(fix_subset_after_epoch)
        self.seed = int(check_count("seed", seed) or 0)
        self._rng = np.random.default_rng(self.seed)
        self._reference: dict[Id, float] = {}
        self.last_scores: FloatArray | None = None  # the latest batch's scores, for reports
        if self.warmup_samples:
            self._phase = Phase.WARMUP

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (saved in the state and checked when loading it)."""
        keys = ("ratio", "temperature", "warmup_samples", "epoch_size", "fix_subset_after_epoch", "seed")
        return {k: getattr(self, k) for k in keys}

    def set_reference_losses(self, ids: Any, losses: Any) -> None:
        """Precomputed reference-model losses, looked up by id when :meth:`select` is not given them."""
        id_list = check_ids(ids)
        values = check_vector("reference_losses", losses, len(id_list))
        self._reference.update(zip(id_list, values.tolist(), strict=True))

    def select(self, ids: Any, embeddings: Any = None, losses: Any = None, reference_losses: Any = None) -> BoolArray:
        """Keep mask for one batch.

        Args:
            ids: ``(n,)`` sample ids (ints or strings).
            embeddings: unused (accepted for the protocol); if given, its length must match ``ids``.
            losses: ``(n,)`` per-sample learner losses (required outside the warm-up and fixed phases).
            reference_losses: ``(n,)`` reference-model losses; looked up by id from
                :meth:`set_reference_losses` when omitted.
        """
        n = None if embeddings is None else len(np.asarray(embeddings))
        id_list = check_ids(ids, n)
        if self._phase is Phase.FIXED:
            return self._in_subset(id_list)
        if self._phase is Phase.WARMUP:
            keep = self._record(id_list, np.ones(len(id_list), dtype=bool))
            if self._seen >= self.warmup_samples:
                self._phase = Phase.SELECTING
        else:
            keep = self._record(id_list, self._select_batch(id_list, losses, reference_losses))
        if self.epoch_size is not None and self._seen >= self.epoch_size and self.fix_subset_after_epoch:
            self.end_epoch()
        return keep

    def _select_batch(self, ids: list[Id], losses: Any, reference_losses: Any) -> BoolArray:
        if losses is None:
            raise ValueError("losses is required by the learnability selector (per-sample learner losses)")
        learner = check_vector("losses", losses, len(ids))
        reference = self._reference_for(ids, reference_losses)
        scores = learner - reference
        self.last_scores = scores
        k = max(1, curation_budget(len(ids), self.ratio)) if ids else 0
        keys = scores if self.temperature == 0 else scores / self.temperature + self._rng.gumbel(size=len(ids))
        # Gumbel-top-k is exact sampling without replacement ∝ exp(score / T); stable sort: ties to lower index.
        order = np.argsort(-keys, kind="stable")
        keep = np.zeros(len(ids), dtype=bool)
        keep[order[:k]] = True
        return keep

    def _reference_for(self, ids: list[Id], reference_losses: Any) -> FloatArray:
        if reference_losses is not None:
            return check_vector("reference_losses", reference_losses, len(ids))
        missing = [i for i in ids if i not in self._reference]
        if missing:
            raise ValueError(
                f"reference_losses not given and {len(missing)} ids have no precomputed reference loss "
                f"(first: {missing[0]!r}); call set_reference_losses() first"
            )
        return np.array([self._reference[i] for i in ids], dtype=np.float64)

    def end_epoch(self) -> None:
        """Count an epoch; fixes the subset when ``fix_subset_after_epoch`` is set."""
        self._epoch += 1
        if self.fix_subset_after_epoch:
            self._phase = Phase.FIXED

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state(self.config)
        state["rng_state"] = self._rng.bit_generator.state
        state["reference_ids"] = list(self._reference)
        state["reference_losses"] = np.array(list(self._reference.values()), dtype=np.float64)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._load_base_state(state, self.config)
        self._rng = np.random.default_rng(self.seed)
        self._rng.bit_generator.state = dict(state["rng_state"])
        losses = np.asarray(state["reference_losses"], dtype=np.float64).tolist()
        self._reference = dict(zip(state["reference_ids"], losses, strict=True))
        self.last_scores = None
