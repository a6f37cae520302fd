"""A real DINOv2-style self-distillation run on CPU, evaluated against the same encoder at random init.

    .venv/bin/python tools/experiments/dino_cpu_run.py --minutes 6

1. pretrains a small ViT (``vit_small`` narrowed to 128-d x 4 blocks, patch 8, 32 px global / 16 px local crops) with
   :mod:`rfm_models.ssl` (EMA teacher, DINO + iBOT + KoLeo) through ``rfm_models.train.train`` on the ``train``
   split of the real CXRs already ingested by ``clip_cpu_run.py`` (``<workdir>/joined``: COVID-19 collection +
   pediatric pneumonia), for a wall-clock budget;
2. exports the model, reloads the teacher through ``rfm_models.export.load_image_encoder``;
3. embeds the pediatric pneumonia ``train`` and ``val`` splits (3 classes: normal / bacterial / viral) with the
   trained teacher and with the same architecture at its random initialisation (same seed), and reports
   kNN (k=20, cosine) and linear-probe (logistic regression) accuracy on ``val`` for both.

Writes ``results/dino_cpu_run.json`` and ``results/dino_cpu_run.png`` (loss curve + accuracies).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from rfm_data.loader import ShardDataset
from rfm_data.transforms import cxr_eval_transform
from rfm_models.encoders import ImageEncoder
from rfm_models.export import load_image_encoder
from rfm_models.ssl import CropConfig, HeadConfig, SelfDistillationConfig, build_self_distillation, build_ssl_loader
from rfm_models.ssl.config import LossConfig, TeacherScheduleConfig
from rfm_models.ssl.export import save_self_distillation
from rfm_models.train import BudgetConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig, TrainConfig, train
from rfm_models.train.logging import read_jsonl

RESULTS = Path(__file__).parent / "results"
CLASSES = ("No Finding", "Bacterial", "Viral")


def ssl_config(size: int) -> SelfDistillationConfig:
    return SelfDistillationConfig(
        backbone="vit_small", backbone_options={"embed_dim": 128, "depth": 4, "num_heads": 4, "patch_size": 8},
        image_size=size,
        head=HeadConfig(out_dim=1024, hidden_dim=512, bottleneck_dim=128),
        crops=CropConfig(n_local=4, local_size=size // 2),
        loss=LossConfig(teacher_temp_warmup_steps=20, koleo_weight=0.1),
        schedule=TeacherScheduleConfig(momentum_start=0.97))


def seconds_per_step(cfg: SelfDistillationConfig, dataset: str, batch: int) -> float:
    """Time two optimizer-like steps (forward + backward) to turn the minutes budget into a step horizon."""
    model = build_self_distillation(cfg, seed=0)
    loader = build_ssl_loader(dataset, cfg, batch, buffer_size=64)
    it = iter(loader)
    model(next(it))["loss"].backward()
    start = time.perf_counter()
    model(next(it))["loss"].backward()
    return time.perf_counter() - start


def run_training(cfg: SelfDistillationConfig, dataset: str, out: Path, minutes: float, batch: int) -> int:
    steps = max(10, int(minutes * 60 / (seconds_per_step(cfg, dataset, batch) * 1.15)))
    print(f"training {steps} steps of batch {batch}")
    tcfg = TrainConfig(output_dir=str(out / "run"), optimizer=OptimizerConfig(lr=2e-3, beta2=0.999),
                       schedule=ScheduleConfig(warmup_steps=steps // 10, total_steps=steps, min_lr_ratio=0.01),
                       budget=BudgetConfig(max_steps=steps), checkpoint=CheckpointConfig(every_steps=None),
                       log_every=5, tensorboard=False, precision="fp32")  # type: ignore[arg-type]
    model = build_self_distillation(cfg, seed=0)
    train(tcfg, model, build_ssl_loader(dataset, cfg, batch, split="train", buffer_size=256))
    save_self_distillation(model, str(out / "model"))
    return steps


def split_items(dataset: str, split: str) -> tuple[list[torch.Tensor], np.ndarray]:
    ds = ShardDataset(dataset, transform=None)
    images, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        if item["split"] != split:
            continue
        cls = next((k for k, name in enumerate(CLASSES) if item["labels"].get(name) == 1), None)
        if cls is not None:
            images.append(item["image"])
            labels.append(cls)
    return images, np.array(labels)


@torch.no_grad()
def embed(encoder: ImageEncoder, images: list[torch.Tensor], size: int) -> np.ndarray:
    prep = cxr_eval_transform(size, keys=("image",))
    encoder.eval()
    feats = []
    for k in range(0, len(images), 64):
        x = torch.stack([prep({"image": im.float() / 255 if im.dtype == torch.uint8 else im})["image"]
                         for im in images[k:k + 64]])
        feats.append(encoder(x).numpy())
    return np.concatenate(feats)


def probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> dict[str, float]:
    """kNN (cosine, k=20) and linear-probe accuracy on val."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)  # noqa: E731
    knn = KNeighborsClassifier(20, metric="cosine", weights="distance").fit(unit(train_x), train_y)
    scaler = StandardScaler().fit(train_x)
    lin = LogisticRegression(max_iter=2000, C=0.5).fit(scaler.transform(train_x), train_y)
    return {"knn_acc": float((knn.predict(unit(val_x)) == val_y).mean()),
            "linear_acc": float((lin.predict(scaler.transform(val_x)) == val_y).mean())}


def evaluate(encoders: dict[str, ImageEncoder], eval_dataset: str, size: int) -> dict[str, dict[str, float]]:
    (tr_im, tr_y), (va_im, va_y) = split_items(eval_dataset, "train"), split_items(eval_dataset, "val")
    majority = float(np.mean(va_y == np.bincount(tr_y).argmax()))
    out = {name: probe(embed(enc, tr_im, size), tr_y, embed(enc, va_im, size), va_y) for name, enc in encoders.items()}
    out["majority_class"] = {"knn_acc": majority, "linear_acc": majority}
    print(f"eval: {len(tr_y)} train / {len(va_y)} val images, classes {CLASSES}")
    return out


def plot(records: list[dict[str, Any]], metrics: dict[str, dict[str, float]], path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot([r["step"] for r in records], [r["loss"] for r in records])
    a.set(xlabel="optimizer step", ylabel="DINO + iBOT + KoLeo loss", title="self-distillation on real CXRs")
    names = list(metrics)
    xs = np.arange(len(names))
    b.bar(xs - 0.2, [metrics[n]["knn_acc"] for n in names], 0.4, label="kNN (k=20)")
    b.bar(xs + 0.2, [metrics[n]["linear_acc"] for n in names], 0.4, label="linear probe")
    b.set_xticks(xs, names)
    b.set(ylabel="val accuracy (3 classes)", ylim=(0, 1), title="pediatric pneumonia val")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/rfm-clip-cpu", help="where clip_cpu_run.py ingested the data")
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=24)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    work = Path(args.workdir)
    out = work / "dino"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ssl_config(args.image_size)
    start = time.perf_counter()
    steps = run_training(cfg, str(work / "joined"), out, args.minutes, args.batch_size)
    train_s = time.perf_counter() - start
    trained = load_image_encoder(str(out / "model"))
    random_init = build_self_distillation(cfg, seed=0).teacher
    metrics = evaluate({"dino": trained, "random_init": random_init}, str(work / "pediatric_pneumonia_kermany"),
                       args.image_size)
    records = list(read_jsonl(str(out / "run" / "metrics.jsonl")))
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {"steps": steps, "batch_size": args.batch_size, "train_seconds": train_s, "config": cfg.to_dict(),
               "flops": records[-1]["flops"], "first_loss": records[0]["loss"], "last_loss": records[-1]["loss"],
               "metrics": metrics}
    (RESULTS / "dino_cpu_run.json").write_text(json.dumps(summary, indent=1))
    plot(records, metrics, RESULTS / "dino_cpu_run.png")
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
