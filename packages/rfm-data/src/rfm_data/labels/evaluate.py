"""Evaluation of a labeler against the expert MeSH tags of the IU / Open-i reports (``mesh_major``).

The IU indexers read each report and tagged what it describes (``"Cardiomegaly/mild"``,
``"Pleural Effusion/left"``, ``"normal"``). :data:`MESH_MAP` turns a tag into observations: a tag matches a
rule when its head (the text before the first ``/``) is the rule's head and, when the rule names
qualifiers, one of them is among the tag's qualifiers. A report is positive for an observation when one of
its tags maps to it. Indexers tag findings the text hedges ("XXXX atelectasis", "scarring or
atelectasis"), so the headline counts a *non-negated* mention (1 or -1) as positive; the strict variant
(1 only) is reported beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.labels.base import Labeler
from rfm_data.labels.observations import NO_FINDING, OBSERVATIONS, POSITIVE, SUPPORT_DEVICES, UNCERTAIN


@dataclass(frozen=True)
class MeshRule:
    """Tags with head ``head`` (and, if given, one of ``qualifiers``) mean ``observation``."""

    head: str
    observation: str
    qualifiers: tuple[str, ...] = ()


MESH_MAP: tuple[MeshRule, ...] = (
    MeshRule("normal", "No Finding"),
    MeshRule("Mediastinum", "Enlarged Cardiomediastinum", ("prominent", "enlarged", "widened")),
    MeshRule("Cardiomegaly", "Cardiomegaly"),
    MeshRule("Cardiac Shadow", "Cardiomegaly", ("enlarged",)),
    MeshRule("Heart", "Cardiomegaly", ("enlarged",)),
    MeshRule("Opacity", "Lung Opacity"),
    MeshRule("Density", "Lung Opacity", ("lung", "retrocardiac")),
    MeshRule("Airspace Disease", "Lung Opacity"),
    MeshRule("Infiltrate", "Lung Opacity"),
    MeshRule("Nodule", "Lung Lesion"),
    MeshRule("Mass", "Lung Lesion"),
    MeshRule("Cavitation", "Lung Lesion"),
    MeshRule("Pulmonary Edema", "Edema"),
    MeshRule("Pulmonary Congestion", "Edema"),
    MeshRule("Heart Failure", "Edema"),
    MeshRule("Consolidation", "Consolidation"),
    MeshRule("Pneumonia", "Pneumonia"),
    MeshRule("Pulmonary Atelectasis", "Atelectasis"),
    MeshRule("Volume Loss", "Atelectasis"),
    MeshRule("Pneumothorax", "Pneumothorax"),
    MeshRule("Hydropneumothorax", "Pneumothorax"),
    MeshRule("Hemopneumothorax", "Pneumothorax"),
    MeshRule("Pleural Effusion", "Pleural Effusion"),
    MeshRule("Hydropneumothorax", "Pleural Effusion"),
    MeshRule("Hemopneumothorax", "Pleural Effusion"),
    MeshRule("Hemothorax", "Pleural Effusion"),
    MeshRule("Thickening", "Pleural Other", ("pleura",)),
    MeshRule("Cicatrix", "Pleural Other", ("pleura",)),
    MeshRule("Pleura", "Pleural Other"),
    MeshRule("Calcinosis", "Pleural Other", ("pleura",)),
    MeshRule("Deformity", "Pleural Other", ("pleura",)),
    MeshRule("Fractures, Bone", "Fracture"),
    MeshRule("Catheters, Indwelling", "Support Devices"),
    MeshRule("Tube, Inserted", "Support Devices"),
    MeshRule("Implanted Medical Device", "Support Devices"),
    MeshRule("Medical Device", "Support Devices"),
    MeshRule("Surgical Instruments", "Support Devices"),
    MeshRule("Stents", "Support Devices"),
    MeshRule("Sutures", "Support Devices"),
)
#: Records tagged with these were not indexed (or not gradable) and are left out of the evaluation.
EXCLUDED_TAGS = ("No Indexing",)


def _tag_observations(tag: str, rules: Sequence[MeshRule]) -> set[str]:
    head, *qualifiers = (part.strip() for part in tag.split("/"))
    return {rule.observation for rule in rules
            if rule.head == head and (not rule.qualifiers or set(rule.qualifiers) & set(qualifiers))}


def mesh_observations(tags: Sequence[str], rules: Sequence[MeshRule] = MESH_MAP) -> set[str]:
    """The observations that a record's ``mesh_major`` tags mean (see :data:`MESH_MAP`).

    No Finding is also gold where every tag is a device: IU's ``normal`` means "nothing to index", devices
    included, while CheXpert's No Finding (the labeler's) allows devices. A report tagged only
    "Catheters, Indwelling" is a normal study with a line in it.
    """
    per_tag = [_tag_observations(tag, rules) for tag in tags]
    out = set().union(*per_tag)
    if per_tag and all(found == {SUPPORT_DEVICES} for found in per_tag):
        out.add(NO_FINDING)
    return out


@dataclass(frozen=True)
class IuRecord:
    """One IU report for evaluation: id, the text labelled (findings + impression), the expert tags, split."""

    id: str
    text: str
    tags: tuple[str, ...]
    split: str


def label_input(findings: str, impression: str) -> str:
    """The text a labeler sees: findings, then impression, as two paragraphs (the sections rfm labels)."""
    return "\n".join(part.strip() for part in (findings, impression) if part and part.strip())


def iter_iu_records(url: str) -> Iterator[IuRecord]:
    """Records of the IU ``reports.jsonl`` that can be evaluated (with text, indexed).

    Raises:
        ConfigError: a line is not a JSON object with a string ``id`` and a list ``mesh_major``.
    """
    for number, line in enumerate(io.read_text(url).splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        tags = record.get("mesh_major") if isinstance(record, dict) else None
        if not isinstance(tags, list) or not isinstance(record.get("id"), str):
            raise ConfigError(f"{url} line {number}: expected an object with 'id' and a 'mesh_major' list")
        text = label_input(str(record.get("findings") or ""), str(record.get("impression") or ""))
        if text and not any(t in EXCLUDED_TAGS for t in tags):
            yield IuRecord(record["id"], text, tuple(tags), str(record.get("split") or ""))


@dataclass
class Score:
    """Precision / recall / F1 of positive mentions for one observation (``support`` = gold positives)."""

    support: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Evaluation:
    """Scores per observation, the macro-F1 over observations with ``support >= min_support``."""

    backend: str
    reports: int
    positive_values: tuple[int, ...]
    min_support: int
    scores: dict[str, Score] = field(default_factory=dict)

    @property
    def macro_f1(self) -> float:
        f1s = [s.f1 for s in self.scores.values() if s.support >= self.min_support]
        return sum(f1s) / len(f1s) if f1s else 0.0

    def to_dict(self) -> dict[str, object]:
        scores = {name: {**asdict(s), "precision": round(s.precision, 4), "recall": round(s.recall, 4),
                         "f1": round(s.f1, 4)} for name, s in self.scores.items()}
        return {"backend": self.backend, "reports": self.reports, "positive_values": list(self.positive_values),
                "min_support": self.min_support, "macro_f1": round(self.macro_f1, 4), "scores": scores}


def score(
    predictions: Sequence[Mapping[str, int]], gold: Sequence[set[str]], backend: str = "",
    positive_values: tuple[int, ...] = (POSITIVE, UNCERTAIN), min_support: int = 20,
) -> Evaluation:
    """Compare predicted labels with gold observation sets, report by report."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold records")
    result = Evaluation(backend, len(gold), positive_values, min_support, {o: Score() for o in OBSERVATIONS})
    for labels, truth in zip(predictions, gold, strict=True):
        for name, s in result.scores.items():
            predicted = labels.get(name) in positive_values
            actual = name in truth
            s.support += actual
            s.tp += predicted and actual
            s.fp += predicted and not actual
            s.fn += actual and not predicted
    return result


def evaluate_iu(
    labeler: Labeler, url: str, splits: Sequence[str] | None = None,
    positive_values: tuple[int, ...] = (POSITIVE, UNCERTAIN), min_support: int = 20,
) -> Evaluation:
    """Label the IU reports at ``url`` with ``labeler`` and score them against their mapped MeSH tags.

    Args:
        labeler: any backend.
        url: the IU ``reports.jsonl``.
        splits: only records of these ``split`` values (``""`` = outside the R2Gen split); all when None.
        positive_values: label values counted as a positive prediction.
        min_support: observations with fewer gold positives are listed but left out of the macro-F1.
    """
    records = [r for r in iter_iu_records(url) if splits is None or r.split in splits]
    results = labeler.label_batch([r.text for r in records])
    gold = [mesh_observations(r.tags) for r in records]
    return score([dict(r.labels) for r in results], gold, labeler.name, positive_values, min_support)
