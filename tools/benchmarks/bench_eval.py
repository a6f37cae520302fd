"""Evaluation-suite benchmark: the quick suite + linear probe at 1/10/100 % labels on the ~2,000 real CXRs of
covid_chestxray_ieee8023 + pediatric_pneumonia_kermany with a ViT-S vision-language model on CPU.

Side by side in one process, the same model and data:
  * **cached**: rfm-eval's design, features extracted once per split and reused by every task;
  * **re-extract**: every task extracts its own features (``EvalConfig(reuse_features=False)``), what a suite
    of independent scripts does.
Reported: total wall time, the time spent extracting features and its share, per-task seconds, and the ratio.
The model is ``vit_small`` (timm ViT-S/16) + the offline MiniLM text tower, random init (timing only).

    .venv/bin/python tools/benchmarks/bench_eval.py --dataset /tmp/rfm-clip-cpu/joined --image-size 224

``--dataset`` is a shard dataset of the two sources (``tools/experiments/clip_cpu_run.py`` builds one, joined).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from benchutil import cpu_model  # sibling module: benchmarks run as scripts

from rfm_eval.evaluate import EvalConfig, evaluate
from rfm_eval.features import split_size
from rfm_models.export import save_pretrained
from rfm_models.model import ModelConfig, build_model

OBSERVATIONS = ["No Finding", "Pneumonia", "Bacterial", "Viral", "COVID-19"]
RESULTS = Path(__file__).parent / "results"


def _model(directory: str, image_size: int) -> str:
    cfg = ModelConfig(image_encoder="vit_small", text_encoder="minilm", text_options={"max_length": 48},
                      embed_dim=256, image_size=image_size, observations=OBSERVATIONS)
    save_pretrained(build_model(cfg, seed=0), directory)
    return directory


def _run(model_dir: str, dataset: str, out: str, reuse: bool, args: argparse.Namespace) -> dict[str, Any]:
    cfg = EvalConfig(suite="quick", fractions=[0.01, 0.1, 1.0], observations=OBSERVATIONS, n_boot=args.n_boot,
                     batch_size=args.batch_size, progress=False, reuse_features=reuse,
                     cache_dir=str(Path(out) / "cache"))
    start = time.perf_counter()
    result = evaluate(model_dir, dataset, out, cfg)
    wall = time.perf_counter() - start
    return {"variant": "cached" if reuse else "re-extract", "total_s": wall,
            "feature_s": result.feature_seconds, "feature_share": result.feature_seconds / wall,
            "tasks_s": {k: round(v.seconds, 2) for k, v in result.tasks.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="/tmp/rfm-clip-cpu/joined")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", default=str(RESULTS / "eval.json"))
    args = p.parse_args(argv)
    images = split_size(args.dataset, "train") + split_size(args.dataset, "test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model(str(Path(tmp) / "vit_small"), args.image_size)
        for reuse in (True, False):
            rows.append(_run(model_dir, args.dataset, str(Path(tmp) / f"run-{reuse}"), reuse, args))
    ratio = rows[1]["total_s"] / rows[0]["total_s"]
    print(f"quick suite + probe fractions, ViT-S/16 @ {args.image_size}px, {images} images (train+test), CPU")
    print(f"{'variant':<12}{'total s':>10}{'features s':>12}{'share':>8}  tasks s")
    for r in rows:
        print(f"{r['variant']:<12}{r['total_s']:>10.1f}{r['feature_s']:>12.1f}{r['feature_share']:>8.0%}  "
              f"{r['tasks_s']}")
    print(f"re-extract / cached total time: {ratio:.2f}x")
    payload = {"benchmark": "eval_suite", "images": images, "image_size": args.image_size,
               "n_boot": args.n_boot, "rows": rows, "ratio_reextract_over_cached": ratio, "cpu": cpu_model(),
               "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
