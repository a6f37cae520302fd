"""The learned backend: a transformers sequence classifier loaded from a local directory (``rfm-data[learned]``).

Model layout (a CheXbert-style classifier as one head): ``config.id2label`` names every output logit
``"<observation>|<state>"`` with state ``positive``, ``negative``, ``uncertain`` or ``absent``; each
observation the model knows has all four. Per report and observation the arg-max state gives 1 / 0 / -1 /
not mentioned. The directory is what ``save_pretrained`` writes (model + tokenizer); nothing is ever
downloaded (``local_files_only``), and weights load through transformers' safetensors path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rfm_data.errors import ConfigError
from rfm_data.labels.base import MAX_CHARS, check_text, labelers, truncated
from rfm_data.labels.observations import (
    NEGATIVE,
    OBSERVATIONS,
    POSITIVE,
    UNCERTAIN,
    LabelResult,
    validate_labels,
)

STATES: Mapping[str, int | None] = {"positive": POSITIVE, "negative": NEGATIVE, "uncertain": UNCERTAIN,
                                    "absent": None}


def output_layout(id2label: Mapping[int, str]) -> dict[str, dict[str, int]]:
    """``{observation: {state: logit index}}`` from a model's ``id2label``.

    Raises:
        ConfigError: a label not shaped ``observation|state``, an unknown observation or state, or an
            observation without all four states.
    """
    layout: dict[str, dict[str, int]] = {}
    for index, name in id2label.items():
        observation, sep, state = str(name).rpartition("|")
        if not sep or observation not in OBSERVATIONS or state not in STATES:
            raise ConfigError(f"model output {name!r} is not '<observation>|<positive|negative|uncertain|absent>'")
        layout.setdefault(observation, {})[state] = int(index)
    incomplete = [o for o, states in layout.items() if set(states) != set(STATES)]
    if incomplete or not layout:
        raise ConfigError(f"model outputs must give all four states per observation; incomplete: {incomplete}")
    return layout


def decode_logits(logits: Sequence[float], layout: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Labels of one report from its logit vector (arg-max state per observation), checked by the schema."""
    labels: dict[str, int | None] = {}
    for observation, states in layout.items():
        best = max(states, key=lambda s: logits[states[s]])
        labels[observation] = STATES[best]
    return validate_labels(labels)


class LearnedLabeler:
    """Runs a local transformers sequence classifier over reports, in batches, on CPU or a given device."""

    name = "learned"

    def __init__(self, model_dir: str, batch_size: int = 16, max_length: int = 512, device: str = "cpu",
                 max_chars: int = MAX_CHARS) -> None:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as err:
            hint = "the learned backend needs transformers and torch: pip install 'rfm-data[learned]'"
            raise ConfigError(hint) from err
        self.model_dir, self.batch_size, self.max_length, self.max_chars = model_dir, batch_size, max_length, max_chars
        self._torch: Any = torch
        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self._model: Any = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load a sequence classifier from {model_dir}: {err}") from err
        self._model.to(device).eval()
        self._device = device
        self.layout = output_layout(self._model.config.id2label)

    def fingerprint(self) -> str:
        return f"learned/{self.model_dir}/{self._model.config.name_or_path}/max{self.max_chars}"

    def _predict(self, texts: list[str]) -> list[dict[str, int]]:
        out: list[dict[str, int]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(texts[start: start + self.batch_size], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self._device)
            with self._torch.inference_mode():
                logits = self._model(**batch).logits.float().cpu().tolist()
            out.extend(decode_logits(row, self.layout) for row in logits)
        return out

    def label_batch(self, texts: Sequence[str | bytes | None]) -> list[LabelResult]:
        """Label each text; bad input gets its status without reaching the model."""
        checked = [check_text(raw, self.max_chars) for raw in texts]
        good = [text for text, bad in checked if bad is None]
        predicted = iter(self._predict(good))
        return [bad if bad is not None else truncated(LabelResult(next(predicted)), raw, self.max_chars)
                for raw, (_, bad) in zip(texts, checked, strict=True)]


@labelers.register("learned")
def learned_labeler(model_dir: str = "", batch_size: int = 16, max_length: int = 512, device: str = "cpu",
                    max_chars: int = MAX_CHARS) -> LearnedLabeler:
    """A local transformers sequence classifier (``model_dir`` from ``save_pretrained``); see the module doc."""
    if not model_dir:
        raise ConfigError("the learned backend needs model_dir=<a local save_pretrained directory>")
    return LearnedLabeler(model_dir, batch_size=batch_size, max_length=max_length, device=device, max_chars=max_chars)
