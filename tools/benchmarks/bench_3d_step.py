"""3D training-step benchmark: peak memory and step time of 3D CT encoders at 96³ and 128³, with a 2D reference.

One full CLIP training step (forward, CLIP loss, backward, AdamW step) of rfm's ``VisionLanguageModel`` with
batch 2, fp32, for:

  * ``resnet18_3d`` (MONAI 3D ResNet-18, 33 M parameters) at 96³ and 128³,
  * ``vit_small_3d`` (MONAI 3D ViT, 384-d, 12 layers, patch 16: 216 / 512 tokens) at 96³ and 128³,
  * ``vit_small`` (timm ViT-S/16, 2D) at 224 px: the side-by-side reference of a CXR step.

The text tower is ``test_bert`` (2 layers, 32-d) so that the figures are the image tower's; the volumes are CT
phantoms (:mod:`rfm_data.volume_phantoms`) through the real volume pipeline (RAS, 1.5 mm, mediastinal window,
pad/crop to the cube). Each configuration runs in a fresh subprocess, so peak memory is its own: on CPU the
process's peak RSS (``ru_maxrss``) and its increase over the state just before the first step (model, optimizer
and batch built); on a GPU ``torch.cuda.max_memory_allocated``. Step time: median wall seconds over
``--steps`` timed steps after one warm-up step; FLOPs of one step counted by ``measure_flops`` (the trainer's
compute accounting).

    .venv/bin/python tools/benchmarks/bench_3d_step.py --out tools/benchmarks/results/step_3d.json
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchutil import cpu_model  # sibling module: benchmarks run as scripts

CONFIGS = [("resnet18_3d", 96), ("resnet18_3d", 128), ("vit_small_3d", 96), ("vit_small_3d", 128),
           ("vit_small", 224)]
BATCH = 2


@dataclass
class StepResult:
    """One encoder at one input size."""

    encoder: str
    size: int
    input_shape: list[int]
    params_m: float
    device: str
    step_wall_s: float  # median over the timed steps
    step_wall_runs: list[float]
    gflops_per_step: float  # forward + backward, counted with FlopCounterMode
    peak_mb: float  # CPU: peak RSS of the process; GPU: max_memory_allocated
    step_peak_mb: float  # CPU: peak RSS increase during the steps; GPU: the same as peak_mb minus model+batch


def _batch(encoder: str, size: int) -> dict[str, Any]:
    """Two phantoms (one with a lesion) through the volume pipeline, or two 2D slices for the 2D reference."""
    import torch

    from rfm_data.volume_phantoms import PhantomSpec, ct_phantom
    from rfm_data.volume_transforms import VolumeTransformConfig, build_volume_transform, volume_to_tensor

    transform = build_volume_transform(VolumeTransformConfig(spacing=(1.5, 1.5, 1.5), size=size))
    spec = PhantomSpec(shape=(100, 192, 192), spacing=(2.5, 0.8, 0.8), origin=(-76.8, -76.8, 0.0))
    volumes = [transform({"image": volume_to_tensor(ct_phantom(PhantomSpec(**{**spec.__dict__, "lesion": les})))})
               ["image"] for les in (False, True)]
    image = torch.stack(volumes)
    if encoder == "vit_small":  # 2D reference: the middle axial slice, resized to the 2D input size
        middle = image[:, :, :, :, image.shape[-1] // 2]
        image = torch.nn.functional.interpolate(middle, size=(size, size), mode="bilinear", align_corners=False)
    return {"image": image, "report": ["Clear lungs.", "Right lung nodule."], "labels": [{}, {}],
            "sample_id": ["a", "b"]}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_one(encoder: str, size: int, steps: int) -> StepResult:
    """Build, warm up and time one configuration in this process."""
    import torch

    from rfm_models.model import ModelConfig, build_model
    from rfm_models.train.compute import measure_flops

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(ModelConfig(image_encoder=encoder, text_encoder="test_bert", embed_dim=384,
                                    image_size=size, objective="clip")).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in _batch(encoder, size).items()}
    batch = model._ensure_tokens(batch)  # tokenize once: the step times the towers, not the tokenizer

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(batch)["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    before = _peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20
    _, flops = measure_flops(step)  # also the warm-up step
    runs = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        step_peak = peak - base_gpu
    else:
        peak = _peak_rss_mb()
        step_peak = peak - before
    params = sum(p.numel() for p in model.image_encoder.parameters()) / 1e6
    return StepResult(encoder, size, list(batch["image"].shape), round(params, 2), str(device),
                      round(statistics.median(runs), 3), [round(r, 3) for r in runs], round(flops / 1e9, 1),
                      round(peak, 1), round(step_peak, 1))


def _in_subprocess(encoder: str, size: int, steps: int) -> StepResult:
    """Run one configuration in a fresh interpreter (its own peak memory)."""
    out = subprocess.run([sys.executable, __file__, "--one", encoder, str(size), "--steps", str(steps)],
                         check=True, capture_output=True, text=True)
    return StepResult(**json.loads(out.stdout.strip().splitlines()[-1]))


def report(results: list[StepResult], out: str | None) -> None:
    """Print the table; write JSON with metadata to ``out``."""
    print(f"{'encoder':<14}{'input':>22}{'params M':>10}{'GFLOP/step':>12}{'step s':>9}{'peak MB':>10}"
          f"{'step +MB':>10}")
    for r in results:
        print(f"{r.encoder:<14}{'x'.join(map(str, r.input_shape)):>22}{r.params_m:>10}{r.gflops_per_step:>12}"
              f"{r.step_wall_s:>9}{r.peak_mb:>10}{r.step_peak_mb:>10}")
    if out:
        import torch

        meta = {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "batch": BATCH, "precision": "fp32", "objective": "clip",
                "text_encoder": "test_bert",
                # Step times on a shared machine depend on its load: recorded so runs can be compared fairly.
                "load_average_at_end": [round(v, 1) for v in os.getloadavg()]}
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    parser.add_argument("--out", default=None, help="JSON results path")
    parser.add_argument("--only", default=None, help="comma-separated encoder names to run")
    parser.add_argument("--one", nargs=2, metavar=("ENCODER", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(asdict(run_one(args.one[0], int(args.one[1]), args.steps))))
        return 0
    wanted = set(args.only.split(",")) if args.only else None
    results = [_in_subprocess(e, s, args.steps) for e, s in CONFIGS if wanted is None or e in wanted]
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
