"""Saturating power-law fits: known curves, bad input, and a real linear-probe learning curve."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from rfm_data.errors import ConfigError
from rfm_eval.scaling import ScalingPoint, fit_scaling, scaling_report
from rfm_eval.stats import bootstrap, safe_auroc
from rfm_models.encoders.image import create_image_encoder


def _law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * (n / n[0]) ** (-c)


def test_recovers_a_known_curve_and_its_gains() -> None:
    n = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    y = _law(n, 0.92, 0.3, 0.45)
    points = [ScalingPoint(x, v, v - 0.004, v + 0.004, compute=x * 2e9) for x, v in zip(n, y, strict=True)]
    fit = fit_scaling(points, n_boot=200)
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.92, 0.3, 0.45), rel=1e-3)
    truth_2x = float(_law(np.array([n[0], 2 * n[-1]]), 0.92, 0.3, 0.45)[1] - y[-1])
    two = fit.predictions[0]
    assert two.factor == 2 and two.gain.value == pytest.approx(truth_2x, rel=1e-3)
    assert two.gain.low <= truth_2x <= two.gain.high
    assert fit.predictions[1].gain.value > two.gain.value > 0  # 10x gains more than 2x, less than linear
    assert all(lo <= c <= hi for lo, c, hi in zip(fit.curve_low, fit.curve, fit.curve_high, strict=True))
    compute = fit_scaling(points, axis="compute", n_boot=50)
    assert compute.c == pytest.approx(0.45, rel=1e-3) and compute.x0 == pytest.approx(2e12)


def test_decreasing_metric_such_as_a_loss() -> None:
    n = np.array([10.0, 40.0, 160.0, 640.0])
    y = 1.5 + 2.0 * (n / 10) ** -0.7
    fit = fit_scaling([ScalingPoint(x, v) for x, v in zip(n, y, strict=True)], increasing=False, n_boot=50)
    assert fit.a == pytest.approx(1.5, rel=1e-3) and fit.predictions[1].gain.value < 0
    assert fit.rmse < 1e-6  # points without CI: the band comes from the (here ~0) residual noise


@pytest.mark.parametrize(("points", "match"), [
    ([ScalingPoint(100, 0.7), ScalingPoint(100, 0.72), ScalingPoint(200, 0.75)], ">= 3 distinct samples"),
    ([ScalingPoint(100, 0.7), ScalingPoint(200, math.nan), ScalingPoint(400, 0.75)], "point 1.*not finite"),
    ([ScalingPoint(0, 0.7), ScalingPoint(200, 0.7), ScalingPoint(400, 0.75)], "samples=0.*> 0"),
    ([], "no points"),
])
def test_bad_input_is_named(points: list[ScalingPoint], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fit_scaling(points)


def test_compute_axis_needs_flops() -> None:
    points = [ScalingPoint(n, 0.5 + 0.01 * k, label=f"run{k}") for k, n in enumerate((10, 20, 40))]
    with pytest.raises(ConfigError, match=r"run0: compute=0\.0.*flops"):
        fit_scaling(points, axis="compute")


def _kermany(root: Path, split: str, limit: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with (root / "metadata.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split][:limit]
    images = np.stack([np.asarray(Image.open(root / r["image_path"]).convert("L").resize((64, 64)),
                                  dtype=np.float32) / 255.0 for r in rows])
    labels = np.array([int(r["label_pneumonia"]) for r in rows])
    return images, labels, [r["patient_id"] for r in rows]


def test_linear_probe_learning_curve_on_real_features(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "pediatric_pneumonia_kermany"
    if not root.exists():
        pytest.skip("pediatric_pneumonia_kermany not available")
    torch.manual_seed(0)
    encoder = create_image_encoder("test_resnet", image_size=64).eval()
    data = {s: _kermany(root, s, n) for s, n in (("train", 240), ("test", 160))}
    with torch.no_grad():
        raw = {s: encoder((torch.from_numpy(x)[:, None] - 0.5) / 0.25).numpy() for s, (x, _, _) in data.items()}
    scaler = StandardScaler().fit(raw["train"])
    feats = {s: scaler.transform(f) for s, f in raw.items()}
    y_test, groups = data["test"][1], data["test"][2]
    order = np.random.default_rng(0).permutation(len(feats["train"]))  # nested: each subset extends the last
    points = []
    for fraction in (0.1, 0.2, 0.5, 1.0):
        idx = order[: int(fraction * len(order))]
        probe = LogisticRegression(max_iter=2000, C=0.01).fit(feats["train"][idx], data["train"][1][idx])
        score = probe.predict_proba(feats["test"])[:, 1]
        est = bootstrap(lambda i, s=score: safe_auroc(y_test[i], s[i]), len(y_test), groups, n_boot=200)
        points.append(ScalingPoint.from_estimate(len(idx), est, label=f"{fraction:.0%}"))
    assert points[-1].value > points[0].value  # more labelled images help the probe
    report = scaling_report(points, str(tmp_path), metric="AUROC (pneumonia)", n_boot=200)
    fit = report.fits["samples"]
    assert fit.rmse < 0.03 and fit.c > 0
    assert fit.predictions[0].value.value >= points[-1].value - 0.03
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert saved["fits"]["samples"]["predictions"][1]["factor"] == 10
    assert (tmp_path / "scaling_samples.png").stat().st_size > 0 and "compute" not in report.fits
