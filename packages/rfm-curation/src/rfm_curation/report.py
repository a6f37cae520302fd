"""The curation report: Markdown and a PNG, from the selection table, the labels and the duplicate groups.

Shows what a reviewer asks first: why samples were dropped (counts per reason), how many duplicates were
removed, whether the clusters were balanced (sizes before / after) and whether rare findings gained share
(label prevalence before / after: the long tail).
"""

from __future__ import annotations

import io as _io
import json
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rfm_data import io

TOP = 12  # rows shown per table


def positive_counts(labels: pa.ChunkedArray, mask: npt.NDArray[np.bool_]) -> dict[str, int]:
    """Rows with label value 1, per label, among rows where ``mask`` is true."""
    arr = labels.combine_chunks()
    if len(arr) == 0:
        return {}
    offsets = arr.offsets.to_numpy()
    row = np.repeat(np.arange(len(arr)), np.diff(offsets))
    keys = np.asarray(arr.keys.to_numpy(zero_copy_only=False), dtype=str)
    values = arr.items.to_numpy(zero_copy_only=False)
    hit = (values == 1) & mask[row]
    names, counts = np.unique(keys[hit], return_counts=True)
    return dict(sorted(zip(names.tolist(), counts.tolist(), strict=True), key=lambda kv: -kv[1]))


def _reason_table(selection: pa.Table) -> list[str]:
    reasons = selection["reason"].to_numpy(zero_copy_only=False)
    names, counts = np.unique(np.where(reasons == "", "kept", reasons), return_counts=True)
    lines = ["| outcome | samples |", "|---|---:|"]
    lines += [f"| {n} | {c} |" for c, n in sorted(zip(counts.tolist(), names.tolist(), strict=True), reverse=True)]
    return lines


def _cluster_sizes(selection: pa.Table) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Candidates and kept per cluster (clusters of the strategy; empty when it has none)."""
    cluster = selection["cluster"].to_numpy()
    has = cluster >= 0
    if not has.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    kept = selection["kept"].to_numpy(zero_copy_only=False)
    before = np.bincount(cluster[has])
    after = np.bincount(cluster[has & kept], minlength=len(before))
    return before, after


def _cluster_lines(before: npt.NDArray[np.int64], after: npt.NDArray[np.int64]) -> list[str]:
    if len(before) == 0:
        return ["The strategy uses no clusters."]
    small = before <= np.quantile(before, 0.1)
    lines = ["| | clusters with samples | min | median | max | samples in the smallest 10 % of clusters |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, sizes in (("before", before), ("after", after)):
        lines.append(f"| {name} | {int((sizes > 0).sum())} | {int(sizes.min())} | {float(np.median(sizes)):g} | "
                     f"{int(sizes.max())} | {int(sizes[small].sum())} |")
    return lines


def _band_lines(selection: pa.Table) -> list[str]:
    """Candidates and kept per band (strategies that assign bands: CheXficient's, label_balance's rarest label)."""
    band = np.asarray(selection["band"].to_numpy(zero_copy_only=False), dtype=str)
    kept = selection["kept"].to_numpy(zero_copy_only=False)
    names = sorted(set(band[band != ""].tolist()))
    if not names or len(names) > 3 * TOP:  # hkmeans' top clusters are summarised by the cluster table instead
        return []
    lines = ["", "| band | candidates | kept |", "|---|---:|---:|"]
    lines += [f"| {n} | {int((band == n).sum())} | {int(((band == n) & kept).sum())} |" for n in names]
    return lines


def _label_lines(before: Mapping[str, int], after: Mapping[str, int], n_before: int, n_after: int) -> list[str]:
    if not before:
        return ["No structured labels in the manifest."]
    lines = ["| label | before | prevalence before | after | prevalence after | share gain |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, count in list(before.items())[:TOP] + list(before.items())[TOP:][-TOP:]:
        p0, p1 = count / max(n_before, 1), after.get(name, 0) / max(n_after, 1)
        lines.append(f"| {name} | {count} | {p0:.2%} | {after.get(name, 0)} | {p1:.2%} | {p1 / p0:.2f}x |")
    return lines


def _duplicate_lines(duplicates: pa.Table) -> list[str]:
    if duplicates.num_rows == 0:
        return ["No duplicates found."]
    removed = duplicates.filter(pc.not_equal(duplicates["sample_id"], duplicates["representative"]))
    lines = ["| method | groups | removed |", "|---|---:|---:|"]
    for method in sorted(set(duplicates["method"].to_pylist())):
        rows = duplicates.filter(pc.equal(duplicates["method"], method))
        gone = removed.filter(pc.equal(removed["method"], method)).num_rows
        lines.append(f"| {method} | {len(set(rows['group'].to_pylist()))} | {gone} |")
    lines += ["", "Examples (removed → kept representative):", ""]
    lines += [f"- `{r['sample_id']}` → `{r['representative']}` ({r['method']}, similarity {r['similarity']:.4f})"
              for r in removed.slice(0, 5).to_pylist()]
    return lines


def render_markdown(selection: pa.Table, labels: pa.ChunkedArray, duplicates: pa.Table, title: str = "") -> str:
    """The report as Markdown text."""
    reasons = selection["reason"].to_numpy(zero_copy_only=False)
    accepted = reasons != "quarantined"
    kept = reasons == ""
    before, after = _cluster_sizes(selection)
    lines = [f"# Curation report{': ' + title if title else ''}", "",
             f"{int(kept.sum())} kept of {int(accepted.sum())} accepted samples ({selection.num_rows} in the "
             "manifest). Per-sample decisions: `selection.parquet`; figure: `report.png`.", "",
             "## Outcome per reason", "", *_reason_table(selection), "",
             "## Duplicates", "", *_duplicate_lines(duplicates), "",
             "## Cluster sizes (strategy clusters)", "", *_cluster_lines(before, after), *_band_lines(selection), "",
             "## Label prevalence (positives, accepted → kept)", "",
             *_label_lines(positive_counts(labels, accepted), positive_counts(labels, kept),
                           int(accepted.sum()), int(kept.sum())), ""]
    return "\n".join(lines)


def render_png(selection: pa.Table, labels: pa.ChunkedArray, duplicates: pa.Table) -> bytes:
    """Four panels: reasons, cluster sizes before / after, label prevalence before / after, duplicates."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in pipelines
    import matplotlib.pyplot as plt

    reasons = selection["reason"].to_numpy(zero_copy_only=False)
    accepted, kept = reasons != "quarantined", reasons == ""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    names, counts = np.unique(np.where(kept, "kept", reasons), return_counts=True)
    axes[0, 0].barh(names, counts)
    axes[0, 0].set_title("samples per outcome")
    before, after = _cluster_sizes(selection)
    order = np.argsort(-before)
    axes[0, 1].plot(before[order], label="before")
    axes[0, 1].plot(after[order], label="after", linestyle="none", marker="o", markersize=2 if len(order) > 200 else 4)
    axes[0, 1].set(yscale="symlog", title="cluster sizes (sorted by size before)", xlabel="cluster rank")
    axes[0, 1].legend()
    p0, p1 = positive_counts(labels, accepted), positive_counts(labels, kept)
    names_l = list(p0)
    x = np.arange(len(names_l))
    axes[1, 0].bar(x - 0.2, [p0[n] / max(accepted.sum(), 1) for n in names_l], 0.4, label="before")
    axes[1, 0].bar(x + 0.2, [p1.get(n, 0) / max(kept.sum(), 1) for n in names_l], 0.4, label="after")
    axes[1, 0].set_xticks(x, names_l, rotation=60, ha="right", fontsize=7)
    axes[1, 0].set(title="label prevalence (long tail on the right)", yscale="log")
    axes[1, 0].legend()
    gone = duplicates.filter(pc.not_equal(duplicates["sample_id"], duplicates["representative"]))
    methods, removed = np.unique(np.asarray(gone["method"].to_pylist(), dtype=str), return_counts=True)
    axes[1, 1].bar(methods, removed)
    axes[1, 1].set_title("duplicates removed per method")
    if not len(methods):
        axes[1, 1].text(0.5, 0.5, "no duplicates found", ha="center", transform=axes[1, 1].transAxes)
        axes[1, 1].set_axis_off()
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_report(out: str, selection: pa.Table, labels: pa.ChunkedArray, duplicates: pa.Table, title: str = "") -> None:
    """Write ``report.md`` and ``report.png`` under ``out`` (each atomically)."""
    io.write_text(io.join(out, "report.md"), render_markdown(selection, labels, duplicates, title))
    io.write_bytes(io.join(out, "report.png"), render_png(selection, labels, duplicates))


def rewrite_report(out: str) -> None:
    """Re-render the report of a finished curation from its ``selection``/``manifest``/``duplicates`` files."""
    tables = {}
    for name in ("selection", "manifest", "duplicates"):
        tables[name] = io.read_parquet(io.join(out, f"{name}.parquet"))
    done = json.loads(io.read_text(io.join(out, "curation.json")))
    title = f"{done['config']['strategy']}, budget {done['budget']}"
    write_report(out, tables["selection"], tables["manifest"]["labels"], tables["duplicates"], title)
