"""Outputs of a segmentation run: per-image Parquet, summary JSON + Markdown, overlay and histogram PNG."""

from __future__ import annotations

import io as _stdio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: pipelines and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.colors import ListedColormap
from torch import Tensor

from rfm_data import io
from rfm_eval.segmentation.train import PerImageScore

if TYPE_CHECKING:
    from rfm_eval.segmentation.run import SegmentationResult

__all__ = ["write_outputs"]

PER_IMAGE = "per_image.parquet"
_RED = ListedColormap(["red"])


def _write_per_image(out: str, scores: Sequence[PerImageScore]) -> str:
    table = pa.table({
        "sample_id": [s.sample_id for s in scores], "patient_id": [s.patient_id for s in scores],
        "class_name": [s.class_name for s in scores], "dice": [s.dice for s in scores],
        "hd95": [s.hd95 for s in scores],
    })
    url = io.join(out, PER_IMAGE)
    buffer = _stdio.BytesIO()
    pq.write_table(table, buffer)
    io.write_bytes(url, buffer.getvalue())
    return url


def _savefig(fig: Any, url: str) -> None:
    buffer = _stdio.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    io.write_bytes(url, buffer.getvalue())


def _overlays(url: str, images: Tensor, masks: Tensor, pred: Tensor, dice: np.ndarray, n: int) -> None:
    """Ground truth in green contour, prediction in red fill, for ``n`` evenly spread test images."""
    n = max(1, min(n, len(images)))
    picks = np.linspace(0, len(images) - 1, n).round().astype(int)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    for ax, i in zip(axes[0], picks, strict=True):
        ax.imshow(images[i, 0].numpy(), cmap="gray")
        ax.imshow(np.ma.masked_equal(pred[i].amax(0).numpy(), 0), cmap=_RED, alpha=0.35, vmin=0, vmax=1)
        ax.contour(masks[i].amax(0).numpy(), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"Dice {np.nanmean(dice[i]):.3f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("prediction (red) vs reference mask (green contour)", fontsize=9)
    _savefig(fig, url)


def _histogram(url: str, dice: np.ndarray, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 3))
    finite = dice[np.isfinite(dice)]
    ax.hist(finite, bins=[k / 20 for k in range(21)], color="#4477aa", edgecolor="white")
    ax.set_xlabel("Dice per image")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    _savefig(fig, url)


def _markdown(result: SegmentationResult) -> str:
    lines = [f"# Segmentation: {result.source} ({result.encoder_name}, {result.config.encoder_mode.value})", "",
             f"Masks: {result.mask_origin}. Train {result.n_train} images, evaluated on {result.n_eval} "
             f"({result.config.eval_split} split, {result.n_patients} patients) at "
             f"{result.config.image_size} px; 95 % CIs from a patient-level bootstrap "
             f"({result.config.n_boot} resamples).", "",
             "| class | Dice | HD95 (px) |", "|---|---|---|"]
    for name in result.dice:
        lines.append(f"| {name} | {result.dice[name].format()} | {result.hd95[name].format(2)} |")
    lines += ["", f"Training loss per epoch: {', '.join(f'{v:.4f}' for v in result.loss_history)}; "
              f"{result.train_seconds:.1f} s.", "", "![overlays](overlays.png) ![dice](dice_hist.png)", ""]
    return "\n".join(lines)


def write_outputs(result: SegmentationResult, out: str, images: Tensor, masks: Tensor, pred: Tensor,
                  dice: np.ndarray) -> dict[str, str]:
    """Write ``per_image.parquet``, ``summary.json``, ``summary.md``, ``overlays.png``, ``dice_hist.png``."""
    io.makedirs(out)
    files = {"per_image": _write_per_image(out, result.per_image),
             "overlays": io.join(out, "overlays.png"), "dice_hist": io.join(out, "dice_hist.png"),
             "summary_json": io.join(out, "summary.json"), "summary_md": io.join(out, "summary.md")}
    _overlays(files["overlays"], images, masks, pred, dice, result.config.n_overlays)
    _histogram(files["dice_hist"], dice, f"{result.encoder_name}: mean Dice {np.nanmean(dice):.3f}")
    io.write_text(files["summary_json"], json.dumps(result.to_dict(), indent=2))
    io.write_text(files["summary_md"], _markdown(result))
    return files
