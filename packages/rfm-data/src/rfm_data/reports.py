"""Radiology reports: strict decoding, whitespace normalisation, sectioning, and report sources.

A report is split into the sections of :class:`~rfm_data.records.Report` by detecting headers: a known
section name at the start of a line followed by ``:`` (any case), or an UPPER-CASE one after the end of a
sentence inside a line (``"... clear. IMPRESSION: Normal."``, common in one-line CSV cells). Rules:

- Indication, comparison and administrative sections (EXAMINATION, TECHNIQUE, WET READ, ...) end at the
  first blank line; findings and impression run to the next header.
- Text under no header (a headerless note, or paragraphs after a short section) that comes before the
  impression is the findings when the report has no FINDINGS header: a headerless note is findings, the
  CheXpert convention. ``FINDINGS AND IMPRESSION`` counts as impression (MIMIC-CXR's convention).
- Banner lines (``FINAL REPORT``) and administrative sections stay in ``text`` and in no section.
- Whitespace is normalised (runs collapsed, lines stripped, line breaks unified; sections become one
  line), and nothing else is rewritten: de-identification placeholders (IU's ``XXXX``, MIMIC's ``___``)
  stay exactly as they are.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TextIO

from rfm_data import io
from rfm_data.errors import ConfigError, QuarantineError, Reason
from rfm_data.records import Report

SECTIONS = ("indication", "comparison", "findings", "impression")
_OTHER = "other"  # administrative sections: kept in the text, never in a Report section
SECTION_ALIASES: Mapping[str, tuple[str, ...]] = {
    "indication": ("INDICATION", "INDICATIONS", "CLINICAL INDICATION", "HISTORY", "CLINICAL HISTORY",
                   "PATIENT HISTORY", "MEDICAL HISTORY", "REASON FOR EXAM", "REASON FOR EXAMINATION",
                   "REASON FOR STUDY", "REASON FOR REFERRAL", "CLINICAL INFORMATION", "CLINICAL DETAILS",
                   "CLINICAL DATA"),
    "comparison": ("COMPARISON", "COMPARISONS", "PRIOR STUDY", "PRIOR STUDIES", "PRIORS"),
    "findings": ("FINDINGS", "FINDING"),
    "impression": ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "SUMMARY", "OPINION",
                   "FINDINGS AND IMPRESSION", "FINDINGS/IMPRESSION", "IMPRESSION AND RECOMMENDATIONS"),
    _OTHER: ("EXAMINATION", "EXAM", "TYPE OF EXAMINATION", "STUDY", "PROCEDURE", "TECHNIQUE", "TECHNIQUES",
             "WET READ", "NOTIFICATION", "NOTIFICATIONS", "RECOMMENDATION", "RECOMMENDATIONS",
             "RECOMMENDATION(S)", "ADDENDUM", "DICTATED BY", "SIGNED BY", "ELECTRONICALLY SIGNED BY"),
}
BANNERS = ("FINAL REPORT", "PRELIMINARY REPORT", "ADDENDUM")
_PARAGRAPH_BOUNDED = frozenset({"indication", "comparison", _OTHER})


def _build_header_regex() -> tuple[re.Pattern[str], dict[str, str]]:
    kind_of = {alias: kind for kind, aliases in SECTION_ALIASES.items() for alias in aliases}
    # Longest first, so that "CLINICAL HISTORY" is not read as an unknown word before "HISTORY".
    names = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in sorted(kind_of, key=len, reverse=True))
    banners = "|".join(re.escape(b).replace(r"\ ", r"\s+") for b in BANNERS)
    pattern = (
        rf"^[ \t]*(?i:(?P<line>{names}))[ \t]*:"  # any case at the start of a line
        rf"|(?<=[.;!?])[ \t]+(?P<inline>{names})[ \t]*:"  # UPPER CASE after a sentence end
        rf"|^[ \t]*(?i:(?P<banner>{banners}))[ \t]*$"  # a banner alone on its line
    )
    return re.compile(pattern, re.MULTILINE), kind_of


_HEADER, _KIND_OF = _build_header_regex()
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_SPACES = re.compile(r"[^\S\n]+")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # surrogates that errors="surrogateescape" leaves for bad bytes


def normalize_text(text: str) -> str:
    """Unicode NFC, one ``\\n`` per line break, inner whitespace runs → one space, lines stripped.

    Runs of blank lines become one blank line (paragraph breaks carry meaning for sectioning).
    """
    lines = [_SPACES.sub(" ", line).strip() for line in unicodedata.normalize("NFC", text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _split_paragraph(body: str) -> tuple[str, str]:
    """``(first paragraph, the rest)``; blank lines before the first paragraph are skipped."""
    body = body.strip()
    match = _BLANK_LINE.search(body)
    return (body[: match.start()], body[match.end():]) if match else (body, "")


_BANNER = "banner"  # a title line such as FINAL REPORT: not a section, the text under it is unheaded


def _kind(match: re.Match[str]) -> str:
    name = match.group("line") or match.group("inline")
    return _KIND_OF[" ".join(name.upper().split())] if name else _BANNER


@dataclass
class _Parts:
    sections: dict[str, list[str]]
    unheaded: list[str]  # text under no header that comes before the first findings/impression header


def _collect(text: str) -> _Parts:
    parts = _Parts({kind: [] for kind in (*SECTIONS, _OTHER)}, [])
    matches = list(_HEADER.finditer(text))
    main = [m.start() for m in matches if _kind(m) in ("findings", "impression")]
    cutoff = main[0] if main else len(text)
    parts.unheaded.append(text[: matches[0].start()] if matches else text)
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        kind, body, rest = _kind(match), text[match.end(): end], ""
        if kind == _BANNER:
            body, rest = "", body
        elif kind in _PARAGRAPH_BOUNDED:
            body, rest = _split_paragraph(body)
        if rest and match.start() < cutoff:
            parts.unheaded.append(rest)
        if kind != _BANNER:
            parts.sections[kind].append(body)
    return parts


def parse_report(text: str) -> Report:
    """Split a free-text report into indication, comparison, findings and impression.

    See the module docstring for the rules. Never raises: an empty text gives an empty :class:`Report`.

    Args:
        text: the report, as decoded text.

    Returns:
        The sections (one line each, ``""`` when absent) and ``text``, the whole normalised report.
    """
    normalised = normalize_text(text)
    parts = _collect(normalised)
    sections = {kind: _one_line(" ".join(bodies)) for kind, bodies in parts.sections.items()}
    if not parts.sections["findings"]:
        sections["findings"] = _one_line(" ".join(parts.unheaded))
    return Report(indication=sections["indication"], comparison=sections["comparison"],
                  findings=sections["findings"], impression=sections["impression"], text=normalised)


def compose_text(report: Report) -> str:
    """The sections as a headed report (``"INDICATION: ...\\nFINDINGS: ..."``); absent sections are left out.

    :func:`parse_report` of the result gives the same sections back (unless a section's own text contains
    a header, such as IU's ``"INDICATION: HYPERTENSION;"`` indications).
    """
    return "\n".join(f"{kind.upper()}: {getattr(report, kind)}" for kind in SECTIONS if getattr(report, kind))


def decode_report_bytes(data: bytes) -> str:
    """Decode report bytes as strict UTF-8 (a byte-order mark is dropped).

    Raises:
        QuarantineError: ``non_utf8_report`` for bytes that are not UTF-8 text (including NUL bytes, which
            mean a binary file); ``empty_report`` when nothing but whitespace is left.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise QuarantineError(Reason.NON_UTF8_REPORT, f"byte {err.start} is not valid UTF-8") from err
    if "\x00" in text:
        raise QuarantineError(Reason.NON_UTF8_REPORT, "the report holds NUL bytes (binary, not text)")
    if not text.strip():
        raise QuarantineError(Reason.EMPTY_REPORT, "the report is empty or only whitespace")
    return text


def _require_content(report: Report) -> Report:
    if not (report.findings or report.impression):
        raise QuarantineError(Reason.EMPTY_REPORT, "the report has neither findings nor impression text")
    return report


def report_from_text(text: str | None) -> Report:
    """Parse one report cell or file text, checked for use: the strict counterpart of :func:`parse_report`.

    Raises:
        QuarantineError: ``missing_report`` for ``None`` or ``""``; ``non_utf8_report`` when the text holds
            bytes that were not UTF-8 (read with ``errors="surrogateescape"``); ``empty_report`` for
            whitespace only, or a report with neither findings nor impression.
    """
    if not text:
        raise QuarantineError(Reason.MISSING_REPORT, "no report text")
    if _UNDECODABLE.search(text):
        raise QuarantineError(Reason.NON_UTF8_REPORT, "the report text holds bytes that are not UTF-8")
    if not text.strip():
        raise QuarantineError(Reason.EMPTY_REPORT, "the report is only whitespace")
    return _require_content(parse_report(text))


def report_from_sections(sections: Mapping[str, str | None]) -> Report:
    """A report given as separate section texts (``findings``, ``impression``, ``indication``, ...).

    Each section is normalised to one line; ``text`` is :func:`compose_text` of the result.

    Raises:
        QuarantineError: ``missing_report`` when every section is absent or ``""``; ``non_utf8_report``
            for undecodable bytes; ``empty_report`` when neither findings nor impression has text.
    """
    values = {kind: sections.get(kind) or "" for kind in SECTIONS}
    if not any(values.values()):
        raise QuarantineError(Reason.MISSING_REPORT, "no report sections")
    if any(_UNDECODABLE.search(v) for v in values.values()):
        raise QuarantineError(Reason.NON_UTF8_REPORT, "a report section holds bytes that are not UTF-8")
    report = Report(**{kind: _one_line(normalize_text(value)) for kind, value in values.items()})
    report.text = compose_text(report)
    return _require_content(report)


def read_report(url: str) -> Report:
    """Read, decode and section one report file (any fsspec URL).

    Raises:
        QuarantineError: ``missing_report`` when the file does not exist, ``unreadable_url`` when it cannot
            be read, ``empty_report`` / ``non_utf8_report`` as in :func:`decode_report_bytes` and
            :func:`report_from_text`.
    """
    try:
        data = io.read_bytes(url)
    except QuarantineError as err:
        if err.reason is Reason.EMPTY_FILE:
            raise QuarantineError(Reason.EMPTY_REPORT, "the report file has no bytes") from err
        if isinstance(err.__cause__, FileNotFoundError):
            raise QuarantineError(Reason.MISSING_REPORT, "no report file for this study") from err
        raise
    return report_from_text(decode_report_bytes(data))


def mimic_report_url(reports_root: str, subject_id: str, study_id: str) -> str:
    """``<root>/files/p10/p10000032/s50414267.txt``: where MIMIC-CXR keeps the report of a study."""
    subject = subject_id.removeprefix("p")
    study = study_id.removeprefix("s")
    return io.join(reports_root, "files", f"p{subject[:2]}", f"p{subject}", f"s{study}.txt")


def read_mimic_report(url: str) -> Report:
    """One MIMIC-CXR report file (``files/p10/p10000032/s50414267.txt``); see :func:`read_report`."""
    return read_report(url)


@dataclass(frozen=True)
class CsvRow:
    """One data row of a CSV table.

    Attributes:
        line: line number of the row's end in the file (the header is line 1), for messages.
        cells: column name → cell text; a row shorter than the header lacks the missing columns.
        width: how many fields the row has; ``width != len(header)`` means a malformed row (often an
            unquoted comma in a free-text cell, which shifts every later column).
    """

    line: int
    cells: dict[str, str]
    width: int


def _open_table(url: str) -> TextIO:
    fs, path = io.filesystem(url)
    try:
        # Undecodable bytes stay in their cell as lone surrogates so that one bad report does not stop the
        # table; report_from_text() turns them into non_utf8_report for that row only.
        handle: TextIO = fs.open(path, "rt", compression="infer", encoding="utf-8-sig",
                                 errors="surrogateescape", newline="")
    except OSError as err:
        raise ConfigError(f"cannot open the table {url}: {type(err).__name__}") from err
    return handle


def csv_header(url: str) -> list[str]:
    """The column names of a CSV table (``.csv`` or compressed ``.csv.gz``, ...); ``[]`` when empty.

    Raises:
        ConfigError: the table cannot be opened or read.
    """
    with _open_table(url) as handle:
        try:
            return next(csv.reader(handle), [])
        except (csv.Error, OSError, EOFError) as err:
            raise ConfigError(f"cannot read the header of {url}: {err}") from err


def iter_csv_rows(url: str) -> Iterator[CsvRow]:
    """Stream the data rows of a CSV table (``.csv`` or compressed ``.csv.gz``, ``.bz2``, ...).

    Blank lines are skipped. Bytes that are not UTF-8 stay in their cell as lone surrogates (see
    :func:`report_from_text`) instead of failing the whole table.

    Raises:
        ConfigError: the table cannot be opened, or is not parseable CSV (the message names the line).
    """
    with _open_table(url) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            for values in reader:
                if values:
                    yield CsvRow(reader.line_num, dict(zip(header, values, strict=False)), len(values))
        except (csv.Error, OSError, EOFError) as err:
            raise ConfigError(f"{url} is not a readable CSV near line {reader.line_num}: {err}") from err


def has_undecodable(text: str) -> bool:
    """Whether ``text`` (read with ``errors="surrogateescape"``) held bytes that were not UTF-8."""
    return bool(_UNDECODABLE.search(text))


def clean_cell(text: str) -> str:
    """A non-report cell with undecodable bytes replaced by U+FFFD, stripped (ids, paths, labels)."""
    if has_undecodable(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.strip()


def load_report_table(
    url: str, id_column: str = "id", report_column: str = "report"
) -> dict[str, Report | QuarantineError]:
    """Reports from a CSV table with an id and a free-text report column, keyed by id.

    A bad row does not stop the table: its value is the :class:`QuarantineError` that says why.

    Raises:
        ConfigError: the table lacks one of the two columns, or an id repeats.
    """
    header = csv_header(url)
    missing = [c for c in (id_column, report_column) if c not in header]
    if missing:
        raise ConfigError(f"{url} has no column(s) {missing}; its columns are {header}")
    out: dict[str, Report | QuarantineError] = {}
    for row in iter_csv_rows(url):
        key = clean_cell(row.cells.get(id_column, ""))
        if key in out:
            raise ConfigError(f"{url} line {row.line}: id {key!r} appears twice in column {id_column!r}")
        try:
            out[key] = report_from_text(row.cells.get(report_column))
        except QuarantineError as err:
            out[key] = err
    return out


def _iu_field(record: Mapping[str, object], name: str, where: str) -> str:
    value = record.get(name) or ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: field {name!r} must be a string, not {type(value).__name__}")
    return value


def _iu_report(record: Mapping[str, object], where: str) -> Report:
    values = {kind: _one_line(normalize_text(_iu_field(record, kind, where))) for kind in SECTIONS}
    report = Report(**values)
    report.text = compose_text(report)
    return report


def load_iu_reports(url: str) -> dict[str, Report]:
    """The Indiana University (Open-i) reports of ``reports.jsonl``, keyed by record id (``"CXR1"``).

    The record's own ``findings``, ``impression``, ``indication`` and ``comparison`` fields become the
    sections verbatim (whitespace-normalised, ``XXXX`` kept); ``text`` is :func:`compose_text` of them.
    Records without findings or impression are kept: check ``report.findings or report.impression``.

    Raises:
        ConfigError: a line is not UTF-8 JSON with a string ``id``, or an id repeats (the message names
            the line).
    """
    out: dict[str, Report] = {}
    for number, line in enumerate(io.read_bytes(url).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{url} line {number}"
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{where} is not a UTF-8 JSON record: {type(err).__name__}") from err
        key = record.get("id") if isinstance(record, dict) else None
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where} has no string 'id' field")
        if key in out:
            raise ConfigError(f"{where}: id {key!r} appears twice")
        out[key] = _iu_report(record, where)
    return out
