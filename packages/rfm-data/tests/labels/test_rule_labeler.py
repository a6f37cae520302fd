"""The rule labeler on real report sentences: mentions, negation and uncertainty scopes, No Finding, bad input."""

from __future__ import annotations

import pytest

from rfm_data.labels import OBSERVATIONS, LabelStatus, create_labeler, list_labelers, validate_labels
from rfm_data.labels.matcher import Kind, PhraseMatcher, phrase_regex
from rfm_data.labels.rule import RuleLabeler, split_sentences


@pytest.fixture(scope="module")
def rule() -> RuleLabeler:
    labeler = create_labeler("rule")
    assert isinstance(labeler, RuleLabeler)
    return labeler


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mild cardiomegaly. No pleural effusion.", {"Cardiomegaly": 1, "Pleural Effusion": 0}),
        # one "no" negates the whole list, across commas and "or"
        ("There is no focal airspace consolidation, pleural effusion, or pneumothorax.",
         {"Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0}),
        # "no change in" reports the finding
        ("No change in the small left pleural effusion.", {"Pleural Effusion": 1}),
        ("No interval change in cardiomegaly.", {"Cardiomegaly": 1}),
        # post-triggers, and a terminator ending the negation's scope
        ("Pneumothorax is not seen.", {"Pneumothorax": 0}),
        ("No pneumothorax but there is a small right effusion.", {"Pneumothorax": 0, "Pleural Effusion": 1}),
        # uncertainty, pre and post; "no ... to suggest pneumonia" is a negation, not a hedge
        ("Possible left lower lobe pneumonia.", {"Pneumonia": -1}),
        ("Right basilar atelectasis versus consolidation.", {"Atelectasis": -1, "Consolidation": -1}),
        ("A small effusion cannot be excluded.", {"Pleural Effusion": -1}),
        ("There is no focal airspace opacity to suggest pneumonia.", {"Lung Opacity": 0, "Pneumonia": 0}),
        # high-likelihood hedges read as positive
        ("Bibasilar opacities, likely atelectasis.", {"Lung Opacity": 1, "Atelectasis": 1}),
        # de-identification placeholders where the redacted word is nearly always the same
        ("Stable position of the cardiac XXXX and leads. Status post XXXX sternotomy.",
         {"Support Devices": 1, "Pacemaker/ICD Leads": 1, "Sternotomy Wires": 1}),
        ("There are no XXXX of a pleural effusion.", {"Pleural Effusion": 0}),
        # a sentence glued to the next one without a space
        ("Cardiomegaly is present.There is no edema.", {"Cardiomegaly": 1, "Edema": 0}),
        ("Heart size is normal.", {"Cardiomegaly": 0}),
        ("Endotracheal tube 3 cm above the carina. Nasogastric tube in the stomach.",
         {"Support Devices": 1, "Endotracheal Tube": 1, "Nasogastric Tube": 1}),
        ("The chest tube has been removed. No pneumothorax.", {"Pneumothorax": 0, "Chest Tube": 0}),
        # an enlarged cardiomediastinal silhouette: the heart surely, the mediastinum perhaps ("?" targets)
        ("Stable enlarged cardiomediastinal silhouette.", {"Cardiomegaly": 1, "Enlarged Cardiomediastinum": -1}),
        ("Mild nonspecific prominence of mediastinum.", {"Enlarged Cardiomediastinum": 1}),
        # IU's "most XXXX representing" is a redacted "most likely representing"
        ("Bibasilar opacities most XXXX representing atelectasis.", {"Lung Opacity": 1, "Atelectasis": 1}),
        # "could be" hedges what follows too; a recommendation to correlate names a possibility
        ("Left base could be atelectasis or pneumonia.", {"Atelectasis": -1, "Pneumonia": -1}),
        ("Please correlate clinically for pneumonia.", {"Pneumonia": -1}),
        # a positioned tip is a device's; a pleural line or B lines are not lines in that sense
        ("Right XXXX with the tip projecting over the SVC.", {"Support Devices": 1}),
        ("No pleural line to suggest pneumothorax.", {"Pneumothorax": 0}),
        ("XXXX B lines at the lung bases.", {"Edema": 1}),
        # a calcified nodule is a nodule; a calcified granuloma is named benign and is not a Lung Lesion
        ("Calcified nodule in the left midlung.", {"Lung Lesion": 1}),
        ("The heart and mediastinal contours are not enlarged.", {}),
    ],
)
def test_mentions_negation_and_uncertainty(rule: RuleLabeler, text: str, expected: dict[str, int]) -> None:
    labels = rule.label_text(text)
    assert {k: v for k, v in labels.items() if k != "No Finding"} == expected


def test_no_finding_needs_a_normal_statement_and_no_abnormality(rule: RuleLabeler) -> None:
    normal = "The heart is normal in size. The lungs are clear. No pneumothorax or pleural effusion."
    assert rule.label_text(normal)["No Finding"] == 1
    assert rule.label_text("No acute cardiopulmonary abnormality.") == {"No Finding": 1}
    # an abnormality outside the 14 observations still makes the study not normal
    assert "No Finding" not in rule.label_text("Hyperexpanded lungs consistent with emphysema. No effusion.")
    assert "No Finding" not in rule.label_text("Possible small left effusion.")
    # devices do not (the CheXpert convention)
    assert rule.label_text("Right PICC line in the SVC. Lungs are clear.")["No Finding"] == 1


@pytest.mark.parametrize(
    ("text", "status"),
    [(None, LabelStatus.EMPTY), ("", LabelStatus.EMPTY), ("   \n ", LabelStatus.EMPTY),
     (b"\xff\xfe not utf-8 \xc3", LabelStatus.INVALID_TEXT), ("ok\udcff", LabelStatus.INVALID_TEXT),
     ("a\x00b", LabelStatus.INVALID_TEXT)],
)
def test_bad_input_gets_a_status_not_an_exception(rule: RuleLabeler, text: str | bytes | None,
                                                   status: LabelStatus) -> None:
    (result,) = rule.label_batch([text])
    assert result.status is status
    assert result.labels == {}


def test_non_english_and_huge_reports(rule: RuleLabeler) -> None:
    german, chinese = "Herz normal groß. Kein Pleuraerguss.", "心脏大小正常，双肺清晰。"
    huge = "Mild cardiomegaly. " + "The lungs are clear. " * 6000  # ~126 kB
    utf8_bytes = "Small right pleural effusion — stable.".encode()
    results = rule.label_batch([german, chinese, huge, utf8_bytes])
    assert [r.status for r in results] == [LabelStatus.OK, LabelStatus.OK, LabelStatus.TRUNCATED, LabelStatus.OK]
    # no English statement: nothing mentioned, and in particular never "No Finding"
    assert results[0].labels == {} and results[1].labels == {}
    assert results[2].labels["Cardiomegaly"] == 1
    assert results[3].labels == {"Pleural Effusion": 1}


def test_every_output_fits_the_schema(rule: RuleLabeler, shared_data: object) -> None:
    from pathlib import Path

    from rfm_data.labels.evaluate import iter_iu_records

    records = list(iter_iu_records(str(Path(str(shared_data)) / "iu_xray_reports" / "reports.jsonl")))
    for result in rule.label_batch([r.text for r in records[:500]]):
        assert validate_labels(result.labels) == dict(result.labels)
        assert list(result.labels) == [o for o in OBSERVATIONS if o in result.labels]


def test_phrase_syntax() -> None:
    import re

    assert re.match(phrase_regex("chest tube"), "chest-tube")
    assert re.match(phrase_regex("opacit*"), "opacities")
    assert not re.match(phrase_regex("opacit*"), "opacitiesx1")
    assert re.match(phrase_regex("heart {be} {deg} enlarged"), "heart is again mildly enlarged")
    assert not re.match(phrase_regex("heart {w} enlarged"), "heart is not enlarged")
    assert re.match(phrase_regex("kerley b? lines"), "kerley lines")


def test_longest_phrase_wins_regardless_of_list_order() -> None:
    matcher = PhraseMatcher([("no", Kind.PRE_NEG, ()), ("no findings", Kind.NORMAL_STUDY, ()),
                             ("no findings of", Kind.PRE_NEG, ()), ("effusion", Kind.MENTION, ("Pleural Effusion",))])
    hits = list(matcher.find("no findings of effusion"))
    assert [(h.kinds, h.targets) for h in hits] == [(frozenset({Kind.PRE_NEG}), ()),
                                                   (frozenset({Kind.MENTION}), ("Pleural Effusion",))]
    assert hits[0].end_word == 3 and hits[1].word == 3


def test_sentences_split_on_glued_full_stops_and_numbered_items() -> None:
    sentences = split_sentences("Clear lungs.No effusion. 1. Normal heart. 2. No edema")
    # list numbers become sentences of their own, which hold no phrase
    content = [s for s in sentences if s not in ("1.", "2.")]
    assert content == ["clear lungs", "no effusion.", "normal heart.", "no edema"]


def test_registry_lists_the_backends() -> None:
    assert {"rule", "keyword", "llm", "learned"} <= set(list_labelers())
    with pytest.raises(KeyError, match="known"):
        create_labeler("chexpert-original")
