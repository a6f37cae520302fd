"""Data-scaling curve of a linear probe: AUROC (pneumonia vs normal, pediatric_pneumonia_kermany) against
the number of labelled training images, on frozen features of an rfm model directory.

Nested subsets (each contains the previous) of the train split; a scikit-learn logistic regression per
size; AUROC on the whole test split with a patient-level bootstrap CI (``rfm_eval.stats``); then
``rfm_eval.scaling.scaling_report`` fits ``AUROC = a - b (n/n0)^-c`` and predicts 2x / 10x.

    .venv/bin/python tools/benchmarks/bench_scaling.py --model /tmp/rfm-clip-cpu/run/model \
        --data ../shared/data/pediatric_pneumonia_kermany --out /tmp/bench-scaling
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from benchutil import cpu_model  # sibling module: benchmarks run as scripts
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from rfm_data.transforms import CXR_MEAN, CXR_STD
from rfm_eval.handle import open_model
from rfm_eval.scaling import ScalingPoint, scaling_report
from rfm_eval.stats import bootstrap, safe_auroc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="pediatric_pneumonia_kermany folder")
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", default="0.05,0.1,0.2,0.5,1.0", help="nested fractions of the train split")
    p.add_argument("--random-init", action="store_true", help="the untrained twin instead")
    return p


def _features(args: argparse.Namespace, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    handle = open_model(args.model, random_init=args.random_init)
    encoder, size = handle.image_encoder(), handle.image_size
    with open(Path(args.data) / "metadata.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    feats = []
    for start in tqdm(range(0, len(rows), 64), desc=f"{split} features"):
        batch = np.stack([np.asarray(Image.open(Path(args.data) / r["image_path"]).convert("L").resize((size, size)),
                                     dtype=np.float32) / 255.0 for r in rows[start:start + 64]])
        with torch.no_grad():
            feats.append(encoder((torch.from_numpy(batch)[:, None] - CXR_MEAN) / CXR_STD).numpy())
    return np.concatenate(feats), np.array([int(r["label_pneumonia"]) for r in rows]), [r["patient_id"] for r in rows]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    (x_tr, y_tr, _), (x_te, y_te, groups) = _features(args, "train"), _features(args, "test")
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    order = np.random.default_rng(0).permutation(len(x_tr))
    points = []
    for fraction in (float(f) for f in args.sizes.split(",")):
        idx = order[: max(2, int(fraction * len(order)))]
        probe = LogisticRegression(max_iter=5000, C=0.01).fit(x_tr[idx], y_tr[idx])
        score = probe.predict_proba(x_te)[:, 1]
        est = bootstrap(lambda i, s=score: safe_auroc(y_te[i], s[i]), len(y_te), groups, n_boot=1000)
        points.append(ScalingPoint.from_estimate(len(idx), est, label=f"{fraction:.0%}"))
        print(f"n={len(idx):5d}  AUROC {est.format()}")
    report = scaling_report(points, args.out, metric="linear-probe AUROC (pneumonia)", n_boot=1000)
    fit = report.fits["samples"]
    for pred in fit.predictions:
        print(f"{pred.factor:g}x data (n={pred.x:.0f}): AUROC {pred.value.format()}, gain {pred.gain.format()}")
    Path(args.out, "bench_scaling.json").write_text(json.dumps({"cpu": cpu_model(), "report": report.to_dict(),
                                                                "n_test": len(y_te)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
