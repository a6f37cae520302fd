"""A real CLIP pretraining run on CPU: real CXRs with clinical notes (and label prompts for label-only images).

    .venv/bin/python tools/experiments/clip_cpu_run.py --workdir /tmp/rfm-clip-cpu --minutes 6

1. ingests ``covid_chestxray_ieee8023`` (clinical notes) and ``pediatric_pneumonia_kermany`` (labels only)
   from ``../shared/data`` with the rfm-data adapters (cached in the workdir) and joins their shards;
2. trains ``VisionLanguageModel`` (ResNet-18 from scratch + the offline all-MiniLM-L6-v2, frozen) with the CLIP
   objective through ``rfm_models.train.train`` for a wall-clock budget; label-only images are paired with the
   collator's label prompt ("chest x-ray with pneumonia, viral");
3. exports the model, reloads it, and evaluates on the ``val`` split: zero-shot AUROC from positive vs negative
   prompts, image<->text retrieval R@K on the images that have a note, each next to its chance level.

Writes ``results/clip_cpu_run.json`` and ``results/clip_cpu_loss.png`` beside this script. Proper evaluation
tasks belong to rfm-eval; the metrics here are kept minimal on purpose (sklearn for AUROC).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.ingest import ingest
from rfm_data.loader import ShardDataset, ShardLoader, StreamingShardDataset
from rfm_data.transforms import cxr_eval_transform, cxr_train_transform
from rfm_models.batching import label_prompt
from rfm_models.export import load_pretrained, save_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.train import BudgetConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig, TrainConfig, train
from rfm_models.train.logging import read_jsonl

SOURCES = ("covid_chestxray_ieee8023", "pediatric_pneumonia_kermany")
OBSERVATIONS = ["No Finding", "Pneumonia", "Bacterial", "Viral", "COVID-19"]
RESULTS = Path(__file__).parent / "results"


@dataclass
class RunArgs:
    data_root: str
    workdir: str
    minutes: float
    image_size: int
    batch_size: int
    lr: float
    seed: int
    eval_only: bool


def _parse(argv: list[str] | None) -> RunArgs:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--workdir", default="/tmp/rfm-clip-cpu")
    p.add_argument("--minutes", type=float, default=6.0, help="training wall-clock budget")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-only", action="store_true", help="evaluate the model of an earlier run in the workdir")
    return RunArgs(**vars(p.parse_args(argv)))


# -- data --------------------------------------------------------------------------------------------
def ingest_all(data_root: str, workdir: Path) -> str:
    """Ingest each source once (cached), then join their shards into one dataset (hard links, no copies)."""
    joined = workdir / "joined"
    if (joined / "dataset.json").exists():
        return str(joined)
    entries = []
    for source in SOURCES:
        dest = workdir / source
        if not (dest / "dataset.json").exists():
            ingest(str(Path(data_root) / source), str(dest), IngestConfig(deid=DeidConfig(key="clip-cpu-run")),
                   dataset=source, progress=False)
        for shard in json.loads((dest / "dataset.json").read_text())["shards"]:
            name = f"shards/{source}-{Path(shard['name']).name}"
            (joined / "shards").mkdir(parents=True, exist_ok=True)
            (joined / name).unlink(missing_ok=True)
            (joined / name).hardlink_to(dest / shard["name"])
            entries.append({"name": name, "rows": shard["rows"]})
    (joined / "dataset.json").write_text(json.dumps({"format": "rfm-shards", "shards": entries}))
    return str(joined)


def model_config(image_size: int) -> ModelConfig:
    # ResNet-18 from scratch: no CXR weights exist offline, and a CNN learns faster than a ViT from ~2k images.
    # Notes cut at 48 tokens: the frozen MiniLM's forward over padded 128-token notes was most of a CPU step.
    return ModelConfig(image_encoder="resnet18", text_encoder="minilm", text_options={"max_length": 48},
                       embed_dim=128, objective="clip", image_size=image_size, observations=list(OBSERVATIONS))


def freeze_text_tower(model: VisionLanguageModel) -> None:
    """Lock the pretrained text encoder (LiT-style, text side): 2k pairs would only erode MiniLM's language
    space, and its backward would cost most of the CPU step. The text projection still trains."""
    for param in model.text_encoder.parameters():
        param.requires_grad_(False)


# -- training ----------------------------------------------------------------------------------------
def seconds_per_step(model: VisionLanguageModel, loader: ShardLoader) -> float:
    """Time of forward + backward of one batch (second of two: the first pays one-off costs), to size the
    cosine horizon to the wall-clock budget."""
    batch = next(iter(loader))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        model(batch)["loss"].backward()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return times[-1]


def run_training(args: RunArgs, dataset: str, out: Path) -> tuple[VisionLanguageModel, Any]:
    torch.manual_seed(args.seed)
    model = build_model(model_config(args.image_size), seed=args.seed)
    freeze_text_tower(model)
    stream = StreamingShardDataset(dataset, transform=cxr_train_transform(args.image_size), seed=args.seed,
                                   split="train")
    loader = ShardLoader(stream, batch_size=args.batch_size, collate_fn=model.collator(), drop_last=True)
    # +15 % for the optimizer step and loading, measured once on this machine.
    steps = max(10, int(args.minutes * 60 / (1.15 * seconds_per_step(model, loader))))
    cfg = TrainConfig(output_dir=str(out), optimizer=OptimizerConfig(lr=args.lr, weight_decay=0.05),
                      schedule=ScheduleConfig(warmup_steps=max(1, steps // 20), total_steps=steps),
                      budget=BudgetConfig(max_steps=steps, max_hours=args.minutes * 1.3 / 60),
                      checkpoint=CheckpointConfig(every_steps=None, resume=False), seed=args.seed, log_every=1,
                      progress=False, tensorboard=False)
    return model, train(cfg, model, loader)


# -- evaluation --------------------------------------------------------------------------------------
@dataclass
class ValSet:
    image_emb: np.ndarray
    labels: list[dict[str, int]]
    reports: list[str]
    dataset: list[str]


@torch.no_grad()
def embed_val(model: VisionLanguageModel, dataset: str, image_size: int) -> ValSet:
    ds = ShardDataset(dataset, transform=cxr_eval_transform(image_size), split="val")
    items = [ds[i] for i in range(len(ds))]
    chunks = [model.encode_image(torch.stack([it["image"] for it in items[i:i + 64]]))
              for i in range(0, len(items), 64)]
    # Sample ids are pseudonymised by ingestion: the source is known from the per-source datasets instead.
    covid = ShardDataset(str(Path(dataset).parent / SOURCES[0]), split="val")
    covid_ids = {covid[i]["sample_id"] for i in range(len(covid))}
    return ValSet(torch.cat(chunks).numpy(), [dict(it["labels"]) for it in items],
                  [str(it["report"]).strip() for it in items],
                  ["ieee8023" if it["sample_id"] in covid_ids else "kermany" for it in items])


def prompt(**positives: int) -> str:
    text = label_prompt(positives, OBSERVATIONS)
    assert text is not None
    return text


@torch.no_grad()
def zero_shot(model: VisionLanguageModel, val: ValSet) -> dict[str, dict[str, Any]]:
    """AUROC of sim(image, positive prompt) - sim(image, negative prompt) on the images where the task is
    defined. The prompts use the training template of label-only images."""
    normal = prompt(**{"No Finding": 1})
    tasks: dict[str, tuple[str, str, str, Any]] = {
        "pneumonia_vs_normal": ("Pneumonia", prompt(Pneumonia=1), normal,
                                lambda lab, src: lab.get("Pneumonia") == 1 or lab.get("No Finding") == 1),
        "normal_vs_pneumonia": ("No Finding", normal, prompt(Pneumonia=1),
                                lambda lab, src: lab.get("Pneumonia") == 1 or lab.get("No Finding") == 1),
        "viral_vs_bacterial": ("Viral", prompt(Pneumonia=1, Viral=1), prompt(Pneumonia=1, Bacterial=1),
                               lambda lab, src: (lab.get("Viral") == 1) != (lab.get("Bacterial") == 1)),
        # Within the COVID collection only: pooled with the pediatric set, "COVID" would be "adult vs child".
        "covid19_within_ieee8023": ("COVID-19", prompt(Pneumonia=1, Viral=1, **{"COVID-19": 1}), normal,
                                    lambda lab, src: src == "ieee8023"),
    }
    results = {}
    for name, (finding, pos, neg, include) in tasks.items():
        rows = [i for i, (lab, src) in enumerate(zip(val.labels, val.dataset, strict=True)) if include(lab, src)]
        y = np.array([val.labels[i].get(finding) == 1 for i in rows], dtype=int)
        text = model.encode_text([pos, neg]).numpy()
        score = val.image_emb[rows] @ (text[0] - text[1])
        auroc = float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")
        results[name] = {"auroc": auroc, "chance": 0.5, "n": len(rows), "positives": int(y.sum()),
                         "positive_prompt": pos, "negative_prompt": neg}
    return results


def _chance_recall(n: int, correct: int, k: int) -> float:
    """P(at least one of ``correct`` right answers among the top ``k`` of a random ranking of ``n``)."""
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k) if k < n else 1.0


def recall_at_k(sim: np.ndarray, match: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """R@K of each row's ranking (several right answers allowed: images of one study share a note)."""
    order = np.argsort(-sim, axis=1)
    hits = np.take_along_axis(match, order, axis=1)
    out = {}
    for k in ks:
        out[f"R@{k}"] = float(hits[:, :k].any(axis=1).mean())
        out[f"chance_R@{k}"] = float(np.mean([_chance_recall(sim.shape[1], int(m.sum()), k) for m in match]))
    return out


@torch.no_grad()
def retrieval(model: VisionLanguageModel, val: ValSet) -> dict[str, Any]:
    """Image->text and text->image over the val images that have a clinical note (distinct notes as texts)."""
    rows = [i for i, r in enumerate(val.reports) if r]
    notes = sorted({val.reports[i] for i in rows})
    text = torch.cat([model.encode_text(notes[i:i + 32]) for i in range(0, len(notes), 32)]).numpy()
    match = np.array([[val.reports[i] == t for t in notes] for i in rows])
    sim = val.image_emb[rows] @ text.T
    return {"images": len(rows), "notes": len(notes), "image_to_text": recall_at_k(sim, match, (1, 5, 10)),
            "text_to_image": recall_at_k(sim.T, match.T, (1, 5, 10))}


# -- report ------------------------------------------------------------------------------------------
def plot_losses(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = [r["step"] for r in records], [r["loss"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, lw=0.8, label="batch loss")
    window = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1:], smooth, lw=2, label=f"mean of {window}")
    ax.set(xlabel="optimizer step", ylabel="CLIP loss", title="CLIP pretraining on CPU (train split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    workdir = Path(args.workdir)
    dataset = ingest_all(args.data_root, workdir)
    out = workdir / "run"
    if not args.eval_only:
        shutil.rmtree(out, ignore_errors=True)
        model, _ = run_training(args, dataset, out)
        save_pretrained(model, str(out / "model"))
    state = json.loads((out / "checkpoints" / (out / "checkpoints" / "latest").read_text() / "trainer.json")
                       .read_text())
    model = load_pretrained(str(out / "model"))
    val = embed_val(model, dataset, args.image_size)
    records = read_jsonl(str(out / "metrics.jsonl"))
    losses = [r["loss"] for r in records]
    tenth = max(1, len(losses) // 10)
    summary = {
        "command": "tools/experiments/clip_cpu_run.py " + " ".join(argv or []), "args": asdict(args),
        "model": model.config.to_dict(), "train_samples": len(StreamingShardDataset(dataset, split="train")),
        "steps": state["step"], "epochs": state["epoch"], "planned_steps": state["config"]["schedule"]["total_steps"],
        "train_wall_s": state["counters"]["wall_s"], "train_flops": state["counters"]["flops"],
        "loss_first_tenth": float(np.mean(losses[:tenth])), "loss_last_tenth": float(np.mean(losses[-tenth:])),
        "loss_chance": math.log(args.batch_size), "val_images": len(val.labels),
        "zero_shot": zero_shot(model, val), "retrieval": retrieval(model, val),
        "torch_threads": torch.get_num_threads(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "clip_cpu_run.json").write_text(json.dumps(summary, indent=2))
    plot_losses(records, RESULTS / "clip_cpu_loss.png")
    print(json.dumps({k: summary[k] for k in ("steps", "loss_first_tenth", "loss_last_tenth", "zero_shot",
                                               "retrieval")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
