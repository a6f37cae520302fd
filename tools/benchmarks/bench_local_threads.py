"""Two local pipeline steps at once: torch's default threads vs each step's share of the cores.

kfp.local runs up to two tasks of a ParallelFor at the same time, each a process that by default starts one torch
thread per core. This benchmark runs ``--procs`` concurrent processes of the same real training loop (ResNet-18,
64 px, batch 16, AdamW: the study's image tower) twice per repeat, once with torch's default thread count and once
with ``OMP_NUM_THREADS = cores // procs`` (what ``rfm_pipelines.runner.step_threads`` sets), and reports wall
time per configuration and the ratio. Writes ``--out`` JSON.

    .venv/bin/python tools/benchmarks/bench_local_threads.py --out tools/benchmarks/results/local_threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchutil import cpu_model  # sibling module: benchmarks run as scripts

_LOOP = """
import time, torch, timm
m = timm.create_model("resnet18", num_classes=5)
opt = torch.optim.AdamW(m.parameters())
x, y = torch.randn(16, 3, 64, 64), torch.randint(0, 5, (16,))
for _ in range({steps}):
    loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
"""


def _concurrent(procs: int, steps: int, threads: int | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-c", _LOOP.format(steps=steps)], env=env) for _ in range(procs)]
    if any(p.wait() for p in running):
        raise RuntimeError("a training process failed")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, default=2, help="concurrent steps (kfp.local runs 2)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="tools/benchmarks/results/local_threads.json")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // args.procs)
    walls: dict[str, list[float]] = {"default threads": [], f"{share} thread(s) each": []}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        walls["default threads"].append(_concurrent(args.procs, args.steps, None))
        walls[f"{share} thread(s) each"].append(_concurrent(args.procs, args.steps, share))
    medians = {k: statistics.median(v) for k, v in walls.items()}
    base = medians["default threads"]
    print(f"{args.procs} concurrent processes x {args.steps} ResNet-18 steps on {cores} cores ({cpu_model()})")
    print(f"{'configuration':<22} {'median wall s':>14} {'vs default':>11}")
    for k, m in medians.items():
        print(f"{k:<22} {m:>14.2f} {base / m:>10.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cores": cores, "cpu": cpu_model(), "procs": args.procs,
                                          "steps": args.steps, "walls": walls, "medians": medians,
                                          "speedup": base / medians[f"{share} thread(s) each"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
