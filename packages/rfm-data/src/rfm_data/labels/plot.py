"""The prevalence plot: one horizontal bar per observation, split into positive / uncertain / negative."""

from __future__ import annotations

from collections.abc import Mapping

from rfm_data import io

_COLOURS = {"positive": "#c0392b", "uncertain": "#f39c12", "negative": "#2e86c1"}


def plot_prevalence(counts: Mapping[str, Mapping[str, int]], url: str, title: str = "") -> None:
    """Write a PNG of the share of labelled reports per observation and value (any fsspec URL, atomic)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    names = list(counts)[::-1]
    totals = [max(1, sum(counts[n].values())) for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.2))
    left = [0.0] * len(names)
    for value, colour in _COLOURS.items():
        share = [counts[n][value] / t for n, t in zip(names, totals, strict=True)]
        ax.barh(names, share, left=left, color=colour, label=value)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of labelled reports (the rest: not mentioned)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with io.atomic_write(url) as f:
        fig.savefig(f, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
