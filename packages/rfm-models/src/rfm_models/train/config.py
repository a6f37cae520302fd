"""Trainer configuration: one dataclass per concern, registered as Hydra structured configs.

The dataclasses are plain (no Hydra import needed to build or validate them); :func:`register_configs` puts
them in Hydra's ``ConfigStore`` for the ``rfm-train`` CLI, where YAML experiment presets override them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rfm_data.errors import ConfigError
from rfm_models.model import ModelConfig
from rfm_models.ssl.config import SelfDistillationConfig


class Precision(str, Enum):
    """Numeric precision of the forward/backward pass (the optimizer always keeps fp32 master weights)."""

    AUTO = "auto"  # bf16 on a GPU that supports it, else fp16 on GPU; fp32 on CPU
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"  # uses a GradScaler (its state is checkpointed)


@dataclass
class OptimizerConfig:
    """AdamW hyper-parameters."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping


@dataclass
class ScheduleConfig:
    """Linear warm-up then cosine decay, per optimizer step.

    ``total_steps`` is the cosine horizon; ``None`` takes ``budget.max_steps`` or, failing that,
    ``budget.max_epochs`` x optimizer steps per epoch. Budgets in samples, FLOPs or hours do not define a
    horizon (they stop the run wherever it is), so give ``total_steps`` with them.
    """

    warmup_steps: int = 0
    total_steps: int | None = None
    min_lr_ratio: float = 0.0  # the cosine ends at lr * min_lr_ratio


@dataclass
class BudgetConfig:
    """Stop when the first of these is reached (``None`` = no limit on that axis)."""

    max_steps: int | None = None  # optimizer steps
    max_epochs: int | None = None
    max_samples: int | None = None  # samples drawn from the loader (all ranks), kept or not
    max_flops: float | None = None  # cumulative training FLOPs (all ranks), see compute.py
    max_hours: float | None = None  # cumulative wall-clock hours across resumes
    # Equal-compute budget: stop once ``flops`` reach what this many plain optimizer steps (every sample of a
    # global batch trained on, no scoring pass) cost; compares online selection with plain runs at equal FLOPs.
    # The per-sample cost is measured in the run itself (see compute.plain_steps_flops). Give
    # schedule.total_steps (or max_steps) with it: the number of steps it allows is not known in advance.
    flops_of_steps: int | None = None


@dataclass
class CheckpointConfig:
    """When checkpoints are written and how many are kept."""

    every_steps: int | None = 500  # also one at the end of the run; None = only at the end
    keep_last: int = 2  # older valid checkpoints are deleted; >= 2 keeps a fallback for a corrupt latest
    resume: bool = True  # continue from the newest valid checkpoint in output_dir if there is one


@dataclass
class TrainConfig:
    """Everything :func:`rfm_models.train.train` needs besides the model, the loader and the selector."""

    output_dir: str = "outputs/train"  # any fsspec URL: checkpoints, metrics.jsonl, tb/, config.yaml
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    precision: Precision = Precision.AUTO
    accumulation_steps: int = 1  # micro-batches per optimizer step
    gradient_checkpointing: bool = False  # calls model.set_gradient_checkpointing(True)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms + no cuDNN autotuning
    device: str = "auto"  # "auto": cuda:LOCAL_RANK when CUDA is available, else cpu
    log_every: int = 10  # optimizer steps between metrics.jsonl / TensorBoard records
    progress: bool = True  # a tqdm bar on rank 0 (also off when stderr is not a terminal)
    tensorboard: bool = True

    def validate(self) -> None:
        """``ConfigError`` naming the first invalid field."""
        checks: list[tuple[bool, str]] = [
            (self.accumulation_steps >= 1, f"accumulation_steps must be >= 1, got {self.accumulation_steps}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.optimizer.lr > 0, f"optimizer.lr must be > 0, got {self.optimizer.lr}"),
            (self.schedule.warmup_steps >= 0, f"schedule.warmup_steps must be >= 0, got {self.schedule.warmup_steps}"),
            (0.0 <= self.schedule.min_lr_ratio <= 1.0, "schedule.min_lr_ratio must be in [0, 1]"),
            (self.checkpoint.keep_last >= 1, f"checkpoint.keep_last must be >= 1, got {self.checkpoint.keep_last}"),
            (self.checkpoint.every_steps is None or self.checkpoint.every_steps >= 1,
             "checkpoint.every_steps must be >= 1 or None"),
        ]
        for name in ("max_steps", "max_epochs", "max_samples", "max_flops", "max_hours"):
            value = getattr(self.budget, name)
            checks.append((value is None or value > 0, f"budget.{name} must be > 0 or None, got {value}"))
        steps = self.budget.flops_of_steps
        checks.append((steps is None or steps >= 1, f"budget.flops_of_steps must be >= 1 or None, got {steps}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        Precision(self.precision)  # a bad string raises ValueError naming the value


def train_config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a nested plain dict (e.g. ``OmegaConf.to_container`` of the CLI config)."""
    sub = {"optimizer": OptimizerConfig, "schedule": ScheduleConfig, "budget": BudgetConfig,
           "checkpoint": CheckpointConfig}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in sub:
            kwargs[key] = sub[key](**value)
        elif key == "precision":  # OmegaConf renders enums by name ("AUTO"); values are lower-case
            kwargs[key] = value if isinstance(value, Precision) else Precision(str(value).lower())
        else:
            kwargs[key] = value
    return TrainConfig(**kwargs)


@dataclass
class DataConfig:
    """The CLI's streaming loader (rfm_data.loader) over a sharded dataset."""

    url: str = "???"  # dataset written by `rfm-data ingest` (any fsspec URL)
    split: str | None = "train"
    batch_size: int = 64
    num_workers: int = 0
    transform: str = "cxr_train"  # a rfm_data.transforms preset name (cxr_train, cxr_eval, …)
    image_size: int = 224
    buffer_size: int = 512
    drop_last: bool = True
    prompt_fraction: float = 0.0  # UniCL: share of reports replaced by label prompts (rfm_models.batching)
    subset: str | None = None  # train only on these samples: a curation output folder, id table or id list


@dataclass
class SelectorConfig:
    """An online selector from rfm_curation's registry; ``name: null`` trains on every sample."""

    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """The whole ``rfm-train`` configuration.

    ``model_kind`` names an entry of ``rfm_models.train.cli.model_kinds``: ``vision_language`` builds
    ``build_model(model)``, ``self_distillation`` builds ``build_self_distillation(self_distillation)``.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    model_kind: str = "vision_language"
    model: ModelConfig = field(default_factory=ModelConfig)
    self_distillation: SelfDistillationConfig = field(default_factory=SelfDistillationConfig)


def register_configs() -> None:
    """Register the structured configs in Hydra's ``ConfigStore`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="rfm_train_schema", node=RunConfig)
    cs.store(group="train", name="default", node=TrainConfig)
