"""Training-step benchmark: CLIP ViT-S/16 + a 12-layer text tower at 224 px on CPU, rfm vs open_clip.

Two measurements, in one process:
  1. **Step time, side by side.** One full training step (forward, CLIP loss, backward, grad-norm clip, AdamW
     step) of rfm's ``VisionLanguageModel`` (``vit_small`` = timm ``vit_small_patch16_224`` with 1 input
     channel, ``bert`` text tower 384-d / 12 layers / 6 heads, linear projections to 384-d, ``clip`` objective)
     and of open_clip's ``CLIP`` built from a config dict matching its ``ViT-S-16`` (the same sizes; 3 input
     channels, causal text transformer, vocabulary set to rfm's tokenizer's). Both get the same batch (real
     CXRs through ``cxr_train_transform``, grey replicated to RGB for open_clip; the same token ids), the same
     AdamW (``rfm_models.train.runtime.build_optimizer``, the trainer's) and fp32. Interleaved over rounds;
     step time in CPU-seconds of the process (both torch threads) and wall seconds, median over rounds.
  2. **Data wait in the real trainer.** ``rfm_models.train.train`` on shards ingested with
     ``rfm_data.ingest.ingest`` from real CXRs (``covid_chestxray_ieee8023``), ``ShardLoader`` +
     ``cxr_train_transform`` + the model's collator, ``num_workers`` 0 and 2: the fraction of the step time the
     loop spends waiting for the next batch (the loader is wrapped to time each ``next``).

open_clip is a benchmark-only alternative, not a dependency of any rfm package:
``.venv/bin/pip install open-clip-torch``. Nothing is downloaded: both models are built from configs.

    .venv/bin/python tools/benchmarks/bench_train_step.py --out tools/benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from benchutil import cpu_model  # sibling module: benchmarks run as scripts
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RFM_SHARED_DATA", REPO.parent / "shared" / "data"))
IMAGE_SET = "covid_chestxray_ieee8023"
REPORTS = DATA / "iu_xray_reports" / "reports.jsonl"
WIDTH, LAYERS, HEADS, PATCH, EMBED_DIM, CONTEXT = 384, 12, 6, 16, 384, 77
VOCAB = 8000  # target of rfm's tokenizer trained on the IU reports (it stops at the words it finds there)

StepFn = Callable[[], float]


@dataclass
class Phases:
    """CPU-seconds of one step, split where the step's own code allows it (no extra synchronisation)."""

    forward_loss: float
    backward: float
    optimizer: float  # grad-norm clip + AdamW step + zero_grad


@dataclass
class StepResult:
    """One implementation at one thread count. Times are medians over rounds (one step per round)."""

    name: str
    threads: int
    params: int
    params_by_part: dict[str, int]
    step_cpu_s: float  # CPU-seconds of the process per step (all torch threads)
    best_step_cpu_s: float
    step_wall_s: float
    images_per_cpu_s: float
    phases_cpu_s: dict[str, float]
    cpu_s_runs: list[float] = field(default_factory=list)


@dataclass
class WaitResult:
    """The real trainer loop over real shards: time spent waiting for data."""

    num_workers: int
    steps_timed: int
    step_wall_s: float  # median wall seconds per step (between batches handed to the loop)
    wait_fraction: float  # waiting for data / wall time of the timed steps
    wait_ms_per_step: float
    first_batch_wait_s: float  # start-up: worker processes, first row groups (not in the fraction)


# ------------------------------------------------------------------------------------------------ data
def _ensure_shards(workdir: Path) -> str:
    """Ingest the real CXR set once with rfm's own ingest (reused when ``workdir`` already has it)."""
    from rfm_data.config import DeidConfig, IngestConfig
    from rfm_data.ingest import ingest

    dest = workdir / "shards"
    if not (dest / "dataset.json").exists():
        # A fixed benchmark key: pseudonyms only need to be consistent within this throwaway dataset.
        ingest(str(DATA / IMAGE_SET), str(dest), IngestConfig(workers=1, deid=DeidConfig(key="bench")),
               progress=False)
    return str(dest)


def _ensure_tokenizer(workdir: Path) -> str:
    """A WordPiece tokenizer trained on the real IU reports (what a from-scratch rfm text tower uses)."""
    from rfm_models.encoders.tokenizer import train_tokenizer

    directory = workdir / "tokenizer"
    if not (directory / "tokenizer.json").exists():
        with open(REPORTS) as f:
            texts = [json.loads(line).get("report") or "" for line in f]
        train_tokenizer(texts, vocab_size=VOCAB, max_length=CONTEXT).save(str(directory))
    return str(directory)


def _loader(url: str, model: Any, batch: int, workers: int) -> Any:
    from rfm_data.loader import ShardLoader, StreamingShardDataset
    from rfm_data.transforms import cxr_train_transform

    ds = StreamingShardDataset(url, transform=cxr_train_transform(224), split=None)
    return ShardLoader(ds, batch_size=batch, num_workers=workers, collate_fn=model.collator(), drop_last=True)


# ---------------------------------------------------------------------------------------------- models
def build_rfm(tokenizer_dir: str) -> nn.Module:
    """rfm's VisionLanguageModel at ViT-S/16 + a BERT of the same width and depth (registry defaults else)."""
    from rfm_models import ModelConfig, build_model

    config = ModelConfig(image_encoder="vit_small", text_encoder="bert", embed_dim=EMBED_DIM, objective="clip",
                         text_options={"tokenizer": tokenizer_dir, "hidden_size": WIDTH, "num_layers": LAYERS,
                                       "num_heads": HEADS, "max_length": CONTEXT}, image_size=224)
    return build_model(config, seed=0)


def build_open_clip(vocab_size: int) -> nn.Module:
    """open_clip's CLIP with its ViT-S-16 sizes, from a config (no hub); vocabulary matched to rfm's."""
    try:
        import open_clip
    except ImportError as err:
        raise SystemExit("this benchmark compares against open_clip: .venv/bin/pip install open-clip-torch") from err
    torch.manual_seed(0)
    vision = {"image_size": 224, "layers": LAYERS, "width": WIDTH, "head_width": WIDTH // HEADS,
              "patch_size": PATCH}
    text = {"context_length": CONTEXT, "vocab_size": vocab_size, "width": WIDTH, "heads": HEADS,
            "layers": LAYERS}
    model: nn.Module = open_clip.CLIP(EMBED_DIM, vision, text, output_dict=True)
    return model


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def param_parts(name: str, model: nn.Module) -> dict[str, int]:
    """Trainable parameters by part, so the table can show where the two architectures differ."""
    if name == "rfm":
        m: Any = model
        return {"vision": _count(m.image_encoder), "text": _count(m.text_encoder),
                "projections+scale": _count(m.image_projection) + _count(m.text_projection) + 1}
    oc: Any = model
    text = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("visual.", "logit_scale")))
    return {"vision": _count(oc.visual), "text": text, "logit_scale": 1}


# ------------------------------------------------------------------------------------------- one step
def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    from rfm_models.train.config import OptimizerConfig
    from rfm_models.train.runtime import build_optimizer

    return build_optimizer(model, OptimizerConfig(), fused=False)  # what the trainer builds on CPU


def make_step(name: str, model: nn.Module, batch: Mapping[str, Any], phases: list[Phases]) -> StepFn:
    """A closure running one full training step and recording its phases; returns the loss."""
    optimizer = _optimizer(model)
    params = [p for p in model.parameters() if p.requires_grad]
    forward = _rfm_forward(model, batch) if name == "rfm" else _open_clip_forward(model, batch)

    def step() -> float:
        t0 = time.process_time()
        loss = forward()
        t1 = time.process_time()
        loss.backward()
        t2 = time.process_time()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the trainer clips at 1.0 by default
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        phases.append(Phases(t1 - t0, t2 - t1, time.process_time() - t2))
        return float(loss.detach())

    return step


def _rfm_forward(model: nn.Module, batch: Mapping[str, Any]) -> Callable[[], Tensor]:
    def forward() -> Tensor:
        loss: Tensor = model(batch)["loss"]
        return loss

    return forward


def _open_clip_forward(model: nn.Module, batch: Mapping[str, Any]) -> Callable[[], Tensor]:
    from open_clip.loss import ClipLoss

    # open_clip's stem takes RGB: the grey CXR replicated, as one would feed it (3x the stem's input work).
    images = batch["image"].expand(-1, 3, -1, -1).contiguous()
    tokens, loss_fn = batch["input_ids"], ClipLoss()

    def forward() -> Tensor:
        out = model(images, tokens)
        loss: Tensor = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        return loss

    return forward


# ------------------------------------------------------------------------------------------ measuring
def _timed(step: StepFn) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step()
    return time.process_time() - cpu0, time.perf_counter() - wall0


def run_steps(models: dict[str, nn.Module], batch: Mapping[str, Any], threads: int,
              rounds: int) -> list[StepResult]:
    """Interleaved rounds, one step per implementation per round, the order rotating each round."""
    torch.set_num_threads(threads)
    phases: dict[str, list[Phases]] = {n: [] for n in models}
    steps = {n: make_step(n, m, batch, phases[n]) for n, m in models.items()}
    for step in steps.values():  # warm-up: optimizer state allocation, allocator, lazy kernels
        step()
    cpu: dict[str, list[float]] = {n: [] for n in models}
    wall: dict[str, list[float]] = {n: [] for n in models}
    names = list(models)
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            c, w = _timed(steps[n])
            cpu[n].append(c)
            wall[n].append(w)
            print(f"  threads={threads} round {r + 1}/{rounds} {n}: {c:.2f} CPU-s, {w:.2f} s wall", flush=True)
    size = int(batch["image"].shape[0])
    return [_step_result(n, models[n], threads, cpu[n], wall[n], phases[n][1:], size) for n in names]


def _step_result(name: str, model: nn.Module, threads: int, cpu: list[float], wall: list[float],
                 phases: list[Phases], batch: int) -> StepResult:
    median = statistics.median(cpu)
    split = {k: statistics.median(getattr(p, k) for p in phases) for k in ("forward_loss", "backward", "optimizer")}
    return StepResult(name, threads, _count(model), param_parts(name, model), median, min(cpu),
                      statistics.median(wall), batch / median, split, cpu)


def profile_step(name: str, model: nn.Module, batch: Mapping[str, Any], top: int = 15) -> list[dict[str, Any]]:
    """torch.profiler over one step of an already warm model: the ops with the most self CPU time (a fresh
    optimizer, so this step also allocates its moments: zeros, a few ms)."""
    from torch.profiler import ProfilerActivity, profile

    step = make_step(name, model, batch, [])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000, "calls": e.count} for e in rows]


# ----------------------------------------------------------------------------------- trainer data wait
class TimedLoader:
    """Delegates to a ShardLoader and records, for each batch, when the loop asked and when it got it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.asked: list[float] = []
        self.got: list[float] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # set_epoch, state_dict, load_state_dict
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        while True:
            self.asked.append(time.perf_counter())
            try:
                batch = next(it)
            except StopIteration:
                self.asked.pop()
                return
            self.got.append(time.perf_counter())
            yield batch


def trainer_wait(url: str, tokenizer_dir: str, workers: int, steps: int, batch: int) -> WaitResult:
    """``steps`` optimizer steps of the real trainer; the first two are not timed (start-up, FLOP count)."""
    from rfm_models.train import BudgetConfig, TrainConfig, train
    from rfm_models.train.config import CheckpointConfig, Precision

    model = build_rfm(tokenizer_dir)
    timed = TimedLoader(_loader(url, model, batch, workers))
    with tempfile.TemporaryDirectory(prefix="rfm-bench-train-") as out:
        cfg = TrainConfig(output_dir=out, budget=BudgetConfig(max_steps=steps), precision=Precision.FP32,
                          checkpoint=CheckpointConfig(every_steps=None, resume=False), progress=False,
                          tensorboard=False, log_every=1000)
        train(cfg, model, timed)
    # Batch i is asked for right after step i-1 ends: its wait is got[i] - asked[i]; a step spans got[i-1]..got[i].
    # Steps 1-2 are skipped: step 1 counts FLOPs (FlopCounterMode) and both pay worker start-up.
    waits = [g - a for a, g in zip(timed.asked, timed.got, strict=True)][2:]
    spans = [b - a for a, b in zip(timed.got[1:], timed.got[2:], strict=False)]
    return WaitResult(workers, len(spans), statistics.median(spans), sum(waits) / sum(spans),
                      1000 * statistics.mean(waits), timed.got[0] - timed.asked[0])


# ------------------------------------------------------------------------------------------- reporting
def report(steps: list[StepResult], waits: list[WaitResult], profiles: dict[str, Any], meta: dict[str, Any],
           out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"CLIP training step, ViT-S/16 + 12-layer text tower, {meta['image_size']} px, batch "
                        f"{meta['batch']}, fp32 CPU (median of {meta['rounds']} interleaved rounds)")
    for col in ("impl", "threads", "params (vision / text / other)", "step CPU-s", "best", "step wall s",
                "images/CPU-s", "fwd+loss / bwd / optim CPU-s", "rfm / open_clip"):
        table.add_column(col, justify="left" if col in ("impl", "params (vision / text / other)") else "right")
    for r in steps:
        parts = " / ".join(f"{v / 1e6:.2f}M" for v in r.params_by_part.values())
        ph = " / ".join(f"{v:.2f}" for v in r.phases_cpu_s.values())
        table.add_row(r.name, str(r.threads), f"{r.params / 1e6:.2f}M ({parts})", f"{r.step_cpu_s:.2f}",
                      f"{r.best_step_cpu_s:.2f}", f"{r.step_wall_s:.2f}", f"{r.images_per_cpu_s:.2f}", ph,
                      f"{_ratio(steps, r.threads):.2f}x" if r.name == "rfm" else "")
    console.print(table)
    wait_table = Table(title=f"rfm trainer on real shards ({IMAGE_SET}, cxr_train_transform, batch "
                             f"{meta['batch']}): time waiting for data")
    for col in ("num_workers", "steps timed", "step wall s", "wait ms/step", "wait fraction", "first batch s"):
        wait_table.add_column(col, justify="right")
    for w in waits:
        wait_table.add_row(str(w.num_workers), str(w.steps_timed), f"{w.step_wall_s:.2f}",
                           f"{w.wait_ms_per_step:.1f}", f"{100 * w.wait_fraction:.2f} %", f"{w.first_batch_wait_s:.2f}")
    console.print(wait_table)
    out.parent.mkdir(parents=True, exist_ok=True)
    ratios = {str(t): _ratio(steps, t) for t in sorted({r.threads for r in steps})}
    out.write_text(json.dumps({"meta": meta, "ratio_rfm_vs_open_clip": ratios,
                               "steps": [asdict(r) for r in steps], "data_wait": [asdict(w) for w in waits],
                               "profile_top_ops": profiles}, indent=2) + "\n")
    _chart(steps, waits, out.with_suffix(".png"), meta)


def _ratio(steps: list[StepResult], threads: int) -> float:
    by = {r.name: r.step_cpu_s for r in steps if r.threads == threads}
    return by["rfm"] / by["open_clip"]


def _chart(steps: list[StepResult], waits: list[WaitResult], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    labels = [f"{r.name}\n{r.threads} thr" for r in steps]
    bottom = [0.0] * len(steps)
    for key, color in (("forward_loss", "#2a6f97"), ("backward", "#61a5c2"), ("optimizer", "#a9d6e5")):
        values = [r.phases_cpu_s[key] for r in steps]
        ax.bar(labels, values, bottom=bottom, color=color, label=key.replace("_", " + "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, r in enumerate(steps):  # the whole-step median sits above the stack of per-phase medians
        ax.plot([i - 0.4, i + 0.4], [r.step_cpu_s] * 2, color="#c0392b", linewidth=1)
        ax.text(i, r.step_cpu_s * 1.02, f"step median {r.step_cpu_s:.2f} s", ha="center", fontsize=8)
    ax.set_ylim(top=max(r.step_cpu_s for r in steps) * 1.12)
    ax.set_ylabel("CPU-seconds per step (medians)")
    ax.set_title(f"CLIP step, ViT-S/16, batch {meta['batch']}, fp32 CPU", fontsize=10)
    ax.legend(fontsize=8)
    ax2.bar([f"workers={w.num_workers}" for w in waits], [100 * w.wait_fraction for w in waits], color="#999999")
    ax2.set_ylabel("% of step time waiting for data")
    ax2.set_title("rfm trainer, real shards", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="where to keep the ingested shards and tokenizer (reused)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, nargs="+", default=[2], help="torch thread counts to measure")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one step per model per round)")
    p.add_argument("--trainer-steps", type=int, default=4, help="trainer steps per num_workers (first 2 untimed)")
    p.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="num_workers of the trainer runs")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler top-ops pass")
    p.add_argument("--out", type=Path, default=REPO / "tools" / "benchmarks" / "results" / "train_step.json")
    return p


def _first_batch(url: str, model: nn.Module, size: int) -> dict[str, Any]:
    batch: dict[str, Any] = next(iter(_loader(url, model, size, 0)))
    return batch


def _measure(args: argparse.Namespace, workdir: Path) -> tuple[list[StepResult], list[WaitResult], dict[str, Any],
                                                                dict[str, Any]]:
    url, tok = _ensure_shards(workdir), _ensure_tokenizer(workdir)
    rfm = build_rfm(tok)
    vocab = rfm.tokenizer.vocab_size  # type: ignore[operator]
    models = {"rfm": rfm, "open_clip": build_open_clip(int(vocab))}
    batch = _first_batch(url, models["rfm"], args.batch)
    steps = [r for t in args.threads for r in run_steps(models, batch, t, args.rounds)]
    torch.set_num_threads(args.threads[0])
    profiles = {} if args.no_profile else {n: profile_step(n, m, batch) for n, m in models.items()}
    del models
    waits = [trainer_wait(url, tok, w, args.trainer_steps, args.batch) for w in args.workers]
    info = {"dataset_counts": json.loads(Path(url, "dataset.json").read_text())["counts"], "vocab_size": vocab,
            "text_tokens": list(batch["input_ids"].shape)}
    return steps, waits, profiles, info


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rfm-bench-train-step-") as tmp:
        steps, waits, profiles, info = _measure(args, args.workdir or Path(tmp))
    import open_clip
    import timm
    import transformers

    meta = {"command": " ".join(["python", "tools/benchmarks/bench_train_step.py", *(argv or sys.argv[1:])]),
            "image_size": 224, "batch": args.batch, "rounds": args.rounds, "threads": args.threads,
            "precision": "fp32", "context_length": CONTEXT, **info,
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "transformers": transformers.__version__, "open_clip": open_clip.__version__}
    report(steps, waits, profiles, meta, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
