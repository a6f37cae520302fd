"""Matplotlib on the Agg backend, figures written atomically to any fsspec URL."""

from __future__ import annotations

import io as _io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rfm_data import io

__all__ = ["figure", "plt", "save_figure"]


def figure(width: float = 6.0, height: float = 4.0) -> tuple[Any, Any]:
    """A new figure and axes."""
    return plt.subplots(figsize=(width, height))


def save_figure(fig: Any, url: str, dpi: int = 120) -> None:
    """Save ``fig`` as PNG to ``url`` and close it."""
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    with io.atomic_write(url) as f:
        f.write(buf.getvalue())
