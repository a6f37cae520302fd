"""DINO step benchmark: one self-distillation training step of ViT-S/16 at 224 px on CPU, with peak memory,
next to a plain supervised ViT-S/16 step on the same images as the reference.

Each variant runs in its own process (peak RSS is per process):

* ``dino``: :class:`rfm_models.ssl.SelfDistillationModel` (``vit_small`` = timm ``vit_small_patch16_224``,
  1 input channel; DINO head 8192 prototypes / 2048 hidden / 256 bottleneck, iBOT shared head, KoLeo), a batch
  of B real CXRs through :class:`rfm_models.ssl.MultiCropd` (2 global 224 px + 8 local 96 px crops), one full
  step: teacher forward, student forward on all crops, backward, grad clip, AdamW (the trainer's
  ``build_optimizer``), and the hook ``after_optimizer_step`` (EMA teacher + weight-decay schedule);
* ``supervised``: the same ViT-S/16 with a linear classifier, cross-entropy on the B images at 224 px, same
  optimizer (the cost of one ordinary fine-tuning step at that batch).

Reported: CPU-seconds of the process per step (all torch threads; robust on a shared machine) and wall seconds,
median over rounds after one warm-up, FLOPs per step (``torch.utils.flop_counter``, forward + backward), and
peak RSS (``ru_maxrss``) of the process.

    .venv/bin/python tools/benchmarks/bench_dino_step.py --batch 4 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from benchutil import cpu_model  # sibling module: benchmarks run as scripts
from torch import Tensor

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RFM_SHARED_DATA", REPO.parent / "shared" / "data"))
IMAGES = DATA / "pediatric_pneumonia_kermany" / "images"


@dataclass
class StepResult:
    """One variant: medians over rounds, FLOPs of one step, peak RSS of its process."""

    name: str
    batch: int
    views_per_image: str
    params: int
    step_cpu_s: float
    step_wall_s: float
    flops_per_step: float
    peak_rss_mib: float
    cpu_s_runs: list[float]


def real_images(n: int) -> list[Tensor]:
    """``n`` real CXRs as ``(1, H, W)`` floats in [0, 1] (long side 256, as ``rfm-data ingest`` stores them)."""
    import numpy as np
    from PIL import Image

    out = []
    for path in sorted(IMAGES.rglob("*.png"))[:n]:
        with Image.open(path) as im:
            im = im.convert("L")
            im.thumbnail((256, 256))
            out.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None])
    return out


def dino_step(batch: int) -> tuple[Callable[[], float], int]:
    from rfm_data.loader import collate
    from rfm_models.ssl import CropConfig, HeadConfig, MultiCropd, SelfDistillationConfig, build_self_distillation
    from rfm_models.train.config import OptimizerConfig
    from rfm_models.train.runtime import build_optimizer

    cfg = SelfDistillationConfig(backbone="vit_small", image_size=224, crops=CropConfig(n_local=8, local_size=96),
                                 head=HeadConfig(out_dim=8192, hidden_dim=2048, bottleneck_dim=256))
    model = build_self_distillation(cfg, seed=0)
    crop = MultiCropd(224, cfg.crops, seed=0)
    data = collate([crop({"image": im}) for im in real_images(batch)])
    opt = build_optimizer(model, OptimizerConfig(), fused=False)
    counter = {"step": 0}

    def step() -> float:
        loss: Tensor = model(data)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        counter["step"] += 1
        model.after_optimizer_step(counter["step"], 1000, opt)
        return float(loss.detach())

    return step, sum(p.numel() for p in model.parameters() if p.requires_grad)


def supervised_step(batch: int) -> tuple[Callable[[], float], int]:
    from rfm_data.transforms import cxr_train_transform
    from rfm_models.encoders import create_image_encoder
    from rfm_models.train.config import OptimizerConfig
    from rfm_models.train.runtime import build_optimizer

    torch.manual_seed(0)
    encoder = create_image_encoder("vit_small", image_size=224)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(encoder.out_dim, 3))
    prep = cxr_train_transform(224)
    x = torch.stack([prep({"image": im})["image"] for im in real_images(batch)])
    y = torch.arange(batch) % 3
    opt = build_optimizer(model, OptimizerConfig(), fused=False)

    def step() -> float:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step, sum(p.numel() for p in model.parameters())


VARIANTS: dict[str, tuple[Callable[[int], tuple[Callable[[], float], int]], str]] = {
    "dino": (dino_step, "2 x 224 + 8 x 96 (teacher: 2 x 224)"),
    "supervised": (supervised_step, "1 x 224"),
}


def measure(name: str, batch: int, rounds: int) -> StepResult:
    """Run in the child process: warm-up (with the FLOP counter), then ``rounds`` timed steps."""
    from rfm_models.train.compute import measure_flops

    build, views = VARIANTS[name]
    step, params = build(batch)
    _, flops = measure_flops(step)
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return StepResult(name, batch, views, params, statistics.median(cpu), statistics.median(wall), flops, rss, cpu)


def run_child(name: str, batch: int, rounds: int, threads: int) -> StepResult:
    cmd = [sys.executable, __file__, "--child", name, "--batch", str(batch), "--rounds", str(rounds),
           "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return StepResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def table(results: list[StepResult]) -> str:
    ref = next((r for r in results if r.name == "supervised"), results[0])
    lines = [f"{'variant':<11} {'batch':>5} {'params':>7} {'CPU-s/step':>10} {'wall s':>7} {'GFLOP/step':>10} "
             f"{'peak RSS MiB':>12} {'x supervised':>12}  views/image"]
    for r in results:
        lines.append(f"{r.name:<11} {r.batch:>5} {r.params / 1e6:>6.1f}M {r.step_cpu_s:>10.2f} {r.step_wall_s:>7.2f} "
                     f"{r.flops_per_step / 1e9:>10.1f} {r.peak_rss_mib:>12.0f} {r.step_cpu_s / ref.step_cpu_s:>12.2f}"
                     f"  {r.views_per_image}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="images per step (the brief's 16 takes minutes per step "
                                                        "on a shared 2-core machine)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "tools" / "benchmarks" / "results" / "dino_step.json"))
    p.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(asdict(measure(args.child, args.batch, args.rounds))))
        return 0
    results = [run_child(name, args.batch, args.rounds, args.threads) for name in ("supervised", "dino")]
    print(table(results))
    meta: dict[str, Any] = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
                            "python": platform.python_version(), "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
