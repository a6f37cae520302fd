"""The pieces a training run is assembled from: device and DDP ranks, precision, determinism, AdamW and the
warm-up + cosine schedule. Each is a small pure-ish function so the trainer loop stays readable."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from rfm_data.errors import ConfigError
from rfm_models.train.config import OptimizerConfig, Precision, ScheduleConfig


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1`` without ``torch.distributed``)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank and world size from an initialised process group (torchrun sets LOCAL_RANK)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo(0, 1, 0)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``"auto"``: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32."""
    precision = Precision(precision)
    if precision is Precision.AUTO:
        if device.type != "cuda":
            return None  # CPU autocast is slower than fp32 for most convolutions: fp32 on CPU
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision is Precision.FP16 and device.type != "cuda":
        raise ConfigError("precision=fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[precision]


def set_determinism(enabled: bool) -> None:
    """Deterministic kernels (bitwise-reproducible runs at some speed cost) or cuDNN autotuning."""
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices / kernels only (biases, norms, scalars like a temperature are
    not decayed: decaying them only hurts)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             fused=fused or None)


def lr_factor(cfg: ScheduleConfig, total_steps: int) -> Callable[[float], float]:
    """Multiplier of the base LR at optimizer step ``s`` (0-based): linear warm-up, then cosine."""
    warmup, floor = cfg.warmup_steps, cfg.min_lr_ratio

    def factor(step: float) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
