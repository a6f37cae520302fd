"""Lung segmentation on covid_chestxray_ieee8023: trained encoder vs its random-init twin, frozen.

Runs ``rfm_eval.segmentation.run_segmentation`` twice (the model directory's image encoder, then the same
architecture with fresh weights) with the same decoder, seed and data, and a paired bootstrap of the Dice
difference over patients. Writes each run's outputs under ``--out`` plus ``bench_segmentation.json``.

    .venv/bin/python tools/benchmarks/bench_segmentation.py --model /tmp/rfm-clip-cpu/run/model \
        --data ../shared/data/covid_chestxray_ieee8023 --out /tmp/bench-seg --image-size 128 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from benchutil import cpu_model  # sibling module: benchmarks run as scripts

from rfm_eval.handle import open_model
from rfm_eval.segmentation import SegmentationConfig, run_segmentation
from rfm_eval.stats import paired_bootstrap


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="rfm model directory")
    p.add_argument("--data", required=True, help="covid_chestxray_ieee8023 folder")
    p.add_argument("--out", required=True)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--mode", default="frozen", choices=["frozen", "finetune"])
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = SegmentationConfig(image_size=args.image_size, epochs=args.epochs, encoder_mode=args.mode,
                             seed=args.seed)
    runs = {}
    for label, random_init in (("trained", False), ("random_init", True)):
        handle = open_model(args.model, random_init=random_init, seed=args.seed)
        start = time.perf_counter()
        runs[label] = run_segmentation(handle, "covid_chestxray_ieee8023_lungs", f"{args.out}/{label}", cfg,
                                       data_root=args.data)
        print(f"{label}: Dice {runs[label].dice['lungs'].format()}  HD95 {runs[label].hd95['lungs'].format(2)}"
              f"  ({time.perf_counter() - start:.0f} s)")
    dice = {k: np.array([s.dice for s in r.per_image]) for k, r in runs.items()}
    groups = [s.patient_id for s in runs["trained"].per_image]
    paired = paired_bootstrap(lambda i: float(np.nanmean(dice["random_init"][i])),
                              lambda i: float(np.nanmean(dice["trained"][i])), len(groups), groups=groups)
    print(f"Dice trained - random init: {paired.diff.format()}  p={paired.p_value:.4f}")
    out = {"cpu": cpu_model(), "config": cfg.to_dict(), "runs": {k: r.to_dict() for k, r in runs.items()},
           "paired_dice_trained_minus_random": paired.to_dict()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "bench_segmentation.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
