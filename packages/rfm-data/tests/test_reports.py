"""Report decoding, normalisation, sectioning and report sources, on real report text."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import fsspec
import pytest

from rfm_data.errors import ConfigError, QuarantineError, Reason
from rfm_data.records import Report
from rfm_data.reports import (
    SECTION_ALIASES,
    compose_text,
    csv_header,
    decode_report_bytes,
    iter_csv_rows,
    load_iu_reports,
    load_report_table,
    mimic_report_url,
    normalize_text,
    parse_report,
    read_mimic_report,
    report_from_sections,
    report_from_text,
)

# The layout of a current MIMIC-CXR report (indentation, blank lines after headers, hard line wraps).
MIMIC_REPORT = "\n".join([
    "                                 FINAL REPORT",
    " EXAMINATION:  CHEST (PA AND LAT)",
    " ",
    " INDICATION:  ___F with new onset ascites  // eval for infection",
    " ",
    " TECHNIQUE:  Chest PA and lateral",
    " ",
    " COMPARISON:  None.",
    " ",
    " FINDINGS: ",
    " ",
    " There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral",
    " nodular opacities that most likely represent nipple shadows. The",
    " cardiomediastinal silhouette is normal.",
    " ",
    " IMPRESSION: ",
    " ",
    " No acute cardiopulmonary process.",
    "",
])

# Older MIMIC-CXR style: no FINDINGS header, the body follows the history paragraph.
MIMIC_OLD_STYLE = (
    "FINAL REPORT\r\nHISTORY:  ___-year-old male with chest pain.\r\n\r\n"
    "PA and lateral views of the chest.\r\n\r\nThe lungs are clear.\r\n"
    "IMPRESSION:  No acute process.\r\n"
)


def _iu_path(shared_data: Path) -> Path:
    return shared_data / "iu_xray_reports" / "reports.jsonl"


def _reason(call: object) -> Reason:
    with pytest.raises(QuarantineError) as info:
        call()  # type: ignore[operator]
    return info.value.reason


# ------------------------------------------------------------------------------------------- sectioning
def test_mimic_style_report_sections() -> None:
    report = parse_report(MIMIC_REPORT)
    assert report.indication == "___F with new onset ascites // eval for infection"
    assert report.comparison == "None."
    assert report.findings == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities "
        "that most likely represent nipple shadows. The cardiomediastinal silhouette is normal."
    )
    assert report.impression == "No acute cardiopulmonary process."
    # Administrative lines stay in the text but in no section.
    assert report.text.startswith("FINAL REPORT\nEXAMINATION: CHEST (PA AND LAT)\n\nINDICATION:")
    assert "Chest PA and lateral" not in report.findings + report.indication + report.impression


def test_unheaded_body_before_impression_is_findings() -> None:
    report = parse_report(MIMIC_OLD_STYLE)
    assert report.indication == "___-year-old male with chest pain."
    assert report.findings == "PA and lateral views of the chest. The lungs are clear."
    assert report.impression == "No acute process."
    assert "\r" not in report.text


def test_headerless_note_is_findings() -> None:
    text = "Heart size normal.\n\nLungs clear. XXXX  are intact."
    report = parse_report(text)
    assert report == Report(findings="Heart size normal. Lungs clear. XXXX are intact.",
                            text="Heart size normal.\n\nLungs clear. XXXX are intact.")


def test_inline_upper_case_headers_split_a_one_line_cell() -> None:
    report = parse_report("INDICATION: cough. FINDINGS: Heart normal; lungs clear. IMPRESSION: Normal chest.")
    assert (report.indication, report.findings, report.impression) == ("cough.", "Heart normal; lungs clear.",
                                                                       "Normal chest.")


def test_lower_case_words_inside_a_sentence_are_not_headers() -> None:
    text = "The patient's history: smoker. Impression: of the rib noted."
    assert parse_report(text).findings == text
    assert parse_report(text).indication == parse_report(text).impression == ""


@pytest.mark.parametrize(
    ("header", "section"),
    [("Clinical History", "indication"), ("REASON FOR EXAMINATION", "indication"),
     ("reason for exam", "indication"),
     ("Clinical information", "indication"), ("Comparisons", "comparison"), ("Findings", "findings"),
     ("Conclusion", "impression"), ("SUMMARY", "impression"), ("Findings and impression", "impression"),
     ("IMPRESSIONS", "impression")],
)
def test_header_aliases(header: str, section: str) -> None:
    report = parse_report(f"{header}: Mild cardiomegaly.\n\nIMPRESSION  :  Stable.")
    expected = "Mild cardiomegaly." + (" Stable." if section == "impression" else "")
    assert getattr(report, section) == expected


def test_repeated_sections_are_joined() -> None:
    report = parse_report("FINDINGS: Lungs clear.\nIMPRESSION: Normal.\nADDENDUM:\nIMPRESSION: No change.")
    assert report.impression == "Normal. No change."


def test_normalisation_keeps_placeholders_and_paragraphs() -> None:
    raw = "  Line\tone  with\u00a0spaces\u2028next ___ and XXXX-XXXX\r\n\r\n\r\n\r\nPara  two \r"
    assert normalize_text(raw) == "Line one with spaces\nnext ___ and XXXX-XXXX\n\nPara two"


def test_empty_text_gives_an_empty_report() -> None:
    assert parse_report(" \n\t ").is_empty()


# ------------------------------------------------------------------------------------------- decoding
def test_decode_report_bytes_accepts_utf8_and_drops_the_bom() -> None:
    text = "Pleural effusion 5\u202fmm, côté gauche."
    assert decode_report_bytes(b"\xef\xbb\xbf" + text.encode()) == text


@pytest.mark.parametrize(
    ("data", "reason"),
    [("Épanchement pleural".encode("latin-1"), Reason.NON_UTF8_REPORT),
     (b"FINDINGS: \x00\x01\x02", Reason.NON_UTF8_REPORT),
     (b"", Reason.EMPTY_REPORT), (b" \r\n\t", Reason.EMPTY_REPORT), (b"\xef\xbb\xbf\n", Reason.EMPTY_REPORT)],
)
def test_decode_report_bytes_rejects(data: bytes, reason: Reason) -> None:
    assert _reason(lambda: decode_report_bytes(data)) is reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [(None, Reason.MISSING_REPORT), ("", Reason.MISSING_REPORT), ("  \n ", Reason.EMPTY_REPORT),
     ("FINDINGS:\n\nIMPRESSION:", Reason.EMPTY_REPORT), ("INDICATION: cough", Reason.EMPTY_REPORT),
     (b"Lungs \xe9".decode("utf-8", "surrogateescape"), Reason.NON_UTF8_REPORT)],
)
def test_report_from_text_rejects(text: str | None, reason: Reason) -> None:
    assert _reason(lambda: report_from_text(text)) is reason


def test_report_from_sections() -> None:
    report = report_from_sections({"findings": " Lungs\nclear. ", "impression": "Normal.",
                                   "indication": None})
    assert (report.findings, report.impression, report.indication) == ("Lungs clear.", "Normal.", "")
    assert report.text == "FINDINGS: Lungs clear.\nIMPRESSION: Normal."
    missing = {"findings": "", "impression": None}
    assert _reason(lambda: report_from_sections(missing)) is Reason.MISSING_REPORT
    assert _reason(lambda: report_from_sections({"findings": " ", "indication": "x"})) is Reason.EMPTY_REPORT


# ------------------------------------------------------------------------------------------- IU reports
def test_load_iu_reports_keeps_the_sections(shared_data: Path) -> None:
    path = _iu_path(shared_data)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    reports = load_iu_reports(str(path))
    assert len(reports) == len(records) == 3365
    first = reports["CXR1"]
    assert first.indication == "Positive TB test"
    assert first.comparison == "None."
    assert first.impression == "Normal chest x-XXXX."
    assert first.findings.endswith("There is no evidence of pneumothorax.")
    # De-identification placeholders are never rewritten: as many XXXX after loading as in the file.
    for record in records:
        report = reports[record["id"]]
        for kind in ("findings", "impression", "indication", "comparison"):
            assert getattr(report, kind).count("XXXX") == record[kind].count("XXXX")
            assert getattr(report, kind) == " ".join(record[kind].split())


def test_iu_reports_round_trip_through_the_parser(shared_data: Path) -> None:
    reports = load_iu_reports(_iu_path(shared_data).as_uri())  # a file:// URL
    sections = ("indication", "comparison", "findings", "impression")
    changed = {key for key, r in reports.items()
               if [getattr(parse_report(r.text), s) for s in sections] != [getattr(r, s) for s in sections]}
    # Exactly the two reports whose own section text holds a header after a sentence end
    # ("... . COMPARISON : XXXX.", "... weeks. IMPRESSION: Exam: ...") are re-split.
    assert changed == {"CXR2415", "CXR2800"}
    assert parse_report(reports["CXR2800"].text).comparison == "XXXX."
    assert compose_text(Report()) == ""


def test_load_iu_reports_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    path.write_bytes(b'{"id": "CXR1", "findings": "Clear."}\n\n{"id": "CXR2", "findings": \n')
    with pytest.raises(ConfigError, match="line 3"):
        load_iu_reports(str(path))
    path.write_bytes(b'{"id": "CXR1"}\n{"id": "CXR1"}\n')
    with pytest.raises(ConfigError, match="twice"):
        load_iu_reports(str(path))


# ------------------------------------------------------------------------------------------- MIMIC files
def test_mimic_report_url() -> None:
    assert mimic_report_url("gs://b/mimic", "10000032", "50414267") == "gs://b/mimic/files/p10/p10000032/s50414267.txt"
    assert mimic_report_url("/m", "p10000032", "s50414267") == "/m/files/p10/p10000032/s50414267.txt"


@pytest.mark.parametrize("protocol", ["file", "memory"])
def test_read_mimic_report(tmp_path: Path, protocol: str) -> None:
    root = str(tmp_path) if protocol == "file" else f"memory://{tmp_path.name}-reports"
    bodies = {"50414267": MIMIC_REPORT.encode(), "53189527": b"", "56699142": "Épanchement".encode("latin-1")}
    for study, data in bodies.items():
        url = mimic_report_url(root, "10000032", study)
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)
    report = read_mimic_report(mimic_report_url(root, "10000032", "50414267"))
    assert report.impression == "No acute cardiopulmonary process."
    expected = {"53189527": Reason.EMPTY_REPORT, "56699142": Reason.NON_UTF8_REPORT,
                "59999999": Reason.MISSING_REPORT}
    for study, reason in expected.items():
        url = mimic_report_url(root, "10000032", study)
        assert _reason(lambda url=url: read_mimic_report(url)) is reason


# ------------------------------------------------------------------------------------------- CSV tables
def _write_report_table(path: Path) -> None:
    rows = [b"id,report\n", b'1,"FINDINGS: Lungs clear.\nIMPRESSION: Normal."\n',
            "2,Épanchement pleural\n".encode("latin-1"), b"3,\n", b'4,"   "\n', b"5,Heart size normal.\n"]
    path.write_bytes(b"".join(rows))


def test_load_report_table_quarantines_rows_not_the_table(tmp_path: Path) -> None:
    path = tmp_path / "reports.csv"
    _write_report_table(path)
    table = load_report_table(str(path))
    assert isinstance(table["1"], Report) and table["1"].impression == "Normal."
    assert isinstance(table["5"], Report) and table["5"].findings == "Heart size normal."
    reasons = {k: v.reason for k, v in table.items() if isinstance(v, QuarantineError)}
    assert reasons == {"2": Reason.NON_UTF8_REPORT, "3": Reason.MISSING_REPORT, "4": Reason.EMPTY_REPORT}
    with pytest.raises(ConfigError, match="no column"):
        load_report_table(str(path), report_column="text")


def test_load_report_table_rejects_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "reports.csv"
    path.write_text("id,report\na,Clear.\na,Clear.\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="twice"):
        load_report_table(str(path))


def test_csv_rows_gzip_width_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["a", "b"], ["1", "multi\nline"], [], ["2", "x", "extra"], ["3"]])
    rows = list(iter_csv_rows(str(path)))
    assert csv_header(str(path)) == ["a", "b"]
    assert [(r.line, r.width, r.cells) for r in rows] == [
        (3, 2, {"a": "1", "b": "multi\nline"}), (5, 3, {"a": "2", "b": "x"}), (6, 1, {"a": "3"})]


def test_csv_rows_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError):
        list(iter_csv_rows(str(path)))


def test_every_section_alias_is_recognised_at_line_start() -> None:
    for kind, aliases in SECTION_ALIASES.items():
        for alias in aliases:
            report = parse_report(f"{alias.title()}: alpha beta\nIMPRESSION: gamma")
            got = {s: getattr(report, s) for s in ("indication", "comparison", "findings")}
            if kind in got:
                assert got[kind] == "alpha beta", alias
            elif kind == "impression":
                assert report.impression == "alpha beta gamma", alias
            else:
                assert not re.search("alpha", " ".join(got.values())), alias
