"""Counts of a dataset by status, reason, view, split, label and quality flag (``rfm-data inspect``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.compute as pc

from rfm_data.manifest import read_manifest

_COLUMNS = ["status", "reason", "view", "split", "labels", "quality_flags", "dataset"]


@dataclass
class DatasetSummary:
    total: int
    accepted: int
    quarantined: int
    by_reason: dict[str, int] = field(default_factory=dict)
    by_view: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)  # positive (1) mentions among accepted images
    by_flag: dict[str, int] = field(default_factory=dict)  # quality flags among accepted images
    by_dataset: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(values: list[Any]) -> dict[str, int]:
    return dict(Counter(v if v else "(none)" for v in values).most_common())


def summarise_manifest(url: str) -> DatasetSummary:
    """Count a manifest; label and flag counts are over accepted images only."""
    table = read_manifest(url).select(_COLUMNS)
    accepted = table.filter(pc.equal(table["status"], "accepted"))
    quarantined = table.filter(pc.equal(table["status"], "quarantined"))
    labels: Counter[str] = Counter()
    for cell in accepted["labels"].to_pylist():
        labels.update(name for name, value in (cell or []) if value == 1)
    flags: Counter[str] = Counter()
    for cell in accepted["quality_flags"].to_pylist():
        flags.update(cell or [])
    return DatasetSummary(
        total=table.num_rows,
        accepted=accepted.num_rows,
        quarantined=quarantined.num_rows,
        by_reason=_count(quarantined["reason"].to_pylist()),
        by_view=_count(accepted["view"].to_pylist()),
        by_split=_count(accepted["split"].to_pylist()),
        by_label=dict(labels.most_common()),
        by_flag=dict(flags.most_common()),
        by_dataset=_count(table["dataset"].to_pylist()),
    )


def render(summary: DatasetSummary, title: str = "") -> str:
    """The summary as text tables (rich), ready to print."""
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=100, force_terminal=False)
    head = Table(title=title or "dataset", show_header=True)
    for col in ("total", "accepted", "quarantined"):
        head.add_column(col, justify="right")
    head.add_row(str(summary.total), str(summary.accepted), str(summary.quarantined))
    console.print(head)
    sections = [("quarantine reason", summary.by_reason), ("view (accepted)", summary.by_view),
                ("split (accepted)", summary.by_split), ("label = 1 (accepted)", summary.by_label),
                ("quality flag (accepted)", summary.by_flag)]
    for name, counts in sections:
        if counts:
            table = Table(show_header=True)
            table.add_column(name)
            table.add_column("count", justify="right")
            for key, value in counts.items():
                table.add_row(key, str(value))
            console.print(table)
    return console.export_text()


def render_quarantined(url: str, limit: int = 20) -> str:
    """The first ``limit`` quarantined inputs of a manifest: id, reason, detail, source."""
    from rich.console import Console
    from rich.table import Table

    table = read_manifest(url).select(["sample_id", "status", "reason", "reason_detail", "source_uri"])
    rows = table.filter(pc.equal(table["status"], "quarantined")).to_pylist()
    if not rows:
        return "no quarantined inputs"
    out = Table(title=f"quarantined inputs ({min(limit, len(rows))} of {len(rows)})", show_header=True)
    for col in ("sample_id", "reason", "detail", "source"):
        out.add_column(col, overflow="fold")
    for r in rows[:limit]:
        out.add_row(r["sample_id"], r["reason"], r["reason_detail"], r["source_uri"])
    console = Console(record=True, width=140, force_terminal=False)
    console.print(out)
    return console.export_text()
