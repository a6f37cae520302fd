"""``rfm-train``: Hydra at the edge, :func:`rfm_models.train.train` inside.

    rfm-train +experiment=clip_cxr data.url=/data/cxr-256 train.output_dir=runs/clip
    torchrun --nproc-per-node=8 -m rfm_models.train +experiment=... (same arguments; one process per GPU)

The composed configuration is written, resolved, to ``<output_dir>/config.yaml`` before training starts; the
trained model is exported with :func:`rfm_models.export.save_pretrained` to ``<output_dir>/model``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.registry import Registry
from rfm_models.export import save_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.train.config import DataConfig, SelectorConfig, register_configs, train_config_from_dict
from rfm_models.train.trainer import TrainResult, train


def compose(overrides: list[str]) -> Any:
    """The ``rfm-train`` configuration (an OmegaConf ``DictConfig``) for command-line ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="rfm_models.train.conf", version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def build_loader(cfg: DataConfig, seed: int, model: VisionLanguageModel) -> Any:
    """A resumable streaming loader over ``cfg.url`` batching with the model's collator (tokenized text,
    label tensors, label prompts); ranks get equal sample counts (DDP needs equal steps)."""
    from rfm_data.loader import ShardLoader, StreamingShardDataset
    from rfm_data.subsets import read_sample_ids
    from rfm_data.transforms import create_transform

    transform = create_transform(cfg.transform, size=cfg.image_size)
    ids = read_sample_ids(cfg.subset) if cfg.subset else None
    dataset = StreamingShardDataset(cfg.url, transform=transform, seed=seed, split=cfg.split,
                                    buffer_size=cfg.buffer_size, drop_remainder=True, ids=ids)
    if cfg.drop_last and len(dataset) < cfg.batch_size:  # every batch would be dropped: say why, before training
        where = f"data.subset {cfg.subset}" if cfg.subset else f"data.url (split {cfg.split})"
        raise ConfigError(f"data.batch_size={cfg.batch_size} exceeds the {len(dataset)} samples this rank gets from "
                          f"{where}: lower data.batch_size or set data.drop_last=false")
    return ShardLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, drop_last=cfg.drop_last,
                       collate_fn=model.collator(cfg.prompt_fraction, seed))


def build_selector(cfg: SelectorConfig, epoch_size: int) -> Any:
    """The configured online selector (``epoch_size`` defaults to this rank's samples per epoch), or None."""
    if cfg.name is None:
        return None
    from rfm_curation.selectors import create_selector

    params = {"epoch_size": epoch_size, **dict(cfg.params)}
    return create_selector(cfg.name, **params)


@dataclass(frozen=True)
class ModelKind:
    """How the CLI builds, feeds and exports one kind of model (``model_kind`` in the configuration)."""

    build: Callable[[dict[str, Any], int], torch.nn.Module]  # (composed config container, seed) -> model
    loader: Callable[[DataConfig, int, Any], Any]  # (data config, seed, model) -> resumable loader
    export: Callable[[Any, str], None]  # (trained model, directory) -> None


model_kinds: Registry[ModelKind] = Registry("model kind")


@model_kinds.register("vision_language")
def _vision_language() -> ModelKind:
    return ModelKind(build=lambda c, seed: build_model(ModelConfig.from_dict(c["model"]), seed=seed),
                     loader=build_loader, export=save_pretrained)


@model_kinds.register("self_distillation")
def _self_distillation() -> ModelKind:
    from rfm_models.ssl.config import SelfDistillationConfig
    from rfm_models.ssl.data import build_ssl_loader
    from rfm_models.ssl.export import save_self_distillation
    from rfm_models.ssl.model import build_self_distillation

    def loader(cfg: DataConfig, seed: int, model: Any) -> Any:
        from rfm_data.subsets import read_sample_ids

        ids = read_sample_ids(cfg.subset) if cfg.subset else None
        return build_ssl_loader(cfg.url, model.config, cfg.batch_size, seed, cfg.split, cfg.num_workers,
                                cfg.buffer_size, cfg.drop_last, ids=ids)

    return ModelKind(
        build=lambda c, seed: build_self_distillation(SelfDistillationConfig.from_dict(c["self_distillation"]),
                                                      seed=seed),
        loader=loader, export=save_self_distillation)


def _init_distributed() -> None:
    """Join the torchrun process group when launched by torchrun (NCCL on GPUs, gloo on CPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def run(overrides: list[str]) -> TrainResult:
    """Compose the configuration, build model / loader / selector, write config.yaml, train, export."""
    from omegaconf import OmegaConf

    cfg = compose(overrides)
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[assignment]
    train_cfg = train_config_from_dict(container["train"])
    _init_distributed()
    if not dist.is_initialized() or dist.get_rank() == 0:
        io.write_text(io.join(train_cfg.output_dir, "config.yaml"), OmegaConf.to_yaml(cfg, resolve=True))
    kind_name = str(container.get("model_kind", "vision_language"))
    if kind_name not in model_kinds:
        raise ConfigError(f"model_kind={kind_name!r} is unknown; choose one of {model_kinds.names()}")
    kind = model_kinds.create(kind_name)
    # Every rank builds the same initial weights from the seed (DDP would broadcast rank 0's anyway).
    model = kind.build(container, train_cfg.seed)
    loader = kind.loader(DataConfig(**container["data"]), train_cfg.seed, model)
    selector = build_selector(SelectorConfig(**container["selector"]), len(loader.dataset))
    result = train(train_cfg, model, loader, selector)
    if not dist.is_initialized() or dist.get_rank() == 0:
        kind.export(model, io.join(train_cfg.output_dir, "model"))
    return result


def presets() -> list[str]:
    """Names usable as ``+experiment=NAME``."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in (files("rfm_models.train.conf") / "experiment").iterdir()
                  if p.name.endswith(".yaml"))


def _usage() -> str:
    return (__doc__ or "") + "\nexperiment presets: " + ", ".join(presets()) + \
        "\nany field can be overridden as key=value (Hydra syntax), e.g. train.budget.max_steps=100\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rfm-train`` and ``python -m rfm_models.train``; returns the exit status."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(_usage())
        return 0
    try:
        result = run(args)
    except (HydraException, OmegaConfBaseException, ConfigError) as err:  # user errors: say what, no traceback
        print(f"rfm-train: error: {err}\n(presets: {', '.join(presets())}; rfm-train --help)", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    c = result.counters
    print(f"stopped at step {result.step} (epoch {result.epoch}) by {result.stop_reason}: loss {result.last_loss:.4f}, "
          f"{c.samples} samples, {c.flops:.3e} FLOPs, {c.wall_s:.1f} s; checkpoint {result.checkpoint}")
    return 0
