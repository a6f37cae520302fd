"""``train(cfg, model, loader, selector=None)``: the one training loop of rfm.

The model contract: ``out = model(batch, keep=mask_or_None)`` returns a dict with ``"loss"`` (a scalar over
the kept rows). With an online selector it must also return ``"image_emb"``, ``"text_emb"`` and, for loss-based
selectors, ``"per_sample_loss"`` for *all* rows when ``keep`` is None. A model with
``after_optimizer_step(step, total_steps, optimizer)`` has it called after every optimizer step (the EMA
teacher and schedules of :mod:`rfm_models.ssl`); state it keeps in parameters / buffers resumes exactly.
``rfm_models.model.VisionLanguageModel`` is the model it is made for (its collator as the loader's
``collate_fn``).

Online selection (CheXficient) costs one extra forward: while the selector is warming up or selecting, each
batch first goes through a **no-grad scoring pass** on every sample (embeddings, per-sample losses), the
selector returns the keep mask, and the **training pass** ``model(batch, keep=mask)`` runs forward + backward
on the kept rows only. We chose two passes over "one forward with grad on everything, loss on a subset"
because the training pass then holds activations for the kept ~25 % only (memory) and the backward runs on
them only, at the cost of re-encoding the kept rows. Once the selector's subset is fixed (after the first
epoch) there is no scoring pass at all: a sample is trained on iff its id is in the subset, and batches with
no kept sample are skipped without any compute (see compute.py for how FLOPs are counted).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_models.train import checkpoint as ckpt
from rfm_models.train.compute import ComputeCounters, DeviceTimer, PerShapeFlops, budget_reason, plain_steps_flops
from rfm_models.train.config import TrainConfig
from rfm_models.train.logging import METRICS_FILE, TrainLogger, kept_ids_file, truncate_jsonl
from rfm_models.train.runtime import (
    autocast_dtype,
    build_optimizer,
    dist_info,
    lr_factor,
    resolve_device,
    seed_everything,
    set_determinism,
)

if TYPE_CHECKING:  # rfm_curation is the optional extra rfm-models[curation]: imported only with a selector
    from rfm_curation.selectors import Selector

_FIXED = "fixed"  # rfm_curation.selectors.Phase.FIXED (a str enum), without importing rfm_curation


class EmptyDatasetError(ValueError):
    """Nothing is left to train on (an empty loader, or a selection that kept no sample)."""


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run reached."""

    step: int
    epoch: int
    stop_reason: str
    counters: ComputeCounters
    last_loss: float
    checkpoint: str | None
    output_dir: str
    resumed_from_step: int | None


def train(cfg: TrainConfig, model: torch.nn.Module, loader: Any, selector: Selector | None = None) -> TrainResult:
    """Train ``model`` on ``loader`` until a budget in ``cfg.budget`` is reached; resumable at any time.

    Args:
        cfg: the run configuration (validated here).
        model: follows the contract in the module docstring. Under ``torch.distributed`` it is wrapped in DDP.
        loader: yields dict batches with ``"sample_id"``; must have ``set_epoch``, ``state_dict`` and
            ``load_state_dict`` (``rfm_data.loader.ShardLoader``) for exact resume.
        selector: an online selector (``rfm_curation.selectors``), or None to train on every sample.

    Returns:
        A :class:`TrainResult`; the same counters are in the last checkpoint and in ``metrics.jsonl``.

    Raises:
        EmptyDatasetError: the loader yields nothing, or the selection kept no sample.
        ConfigError: invalid configuration, or a checkpoint from another world size.
    """
    cfg.validate()
    run = _Run(cfg, model, loader, selector)
    try:
        return run.fit()
    finally:
        run.logger.close()


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _Run:
    """The state of one training run (kept in one object so that checkpointing sees all of it)."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, loader: Any, selector: Selector | None) -> None:
        self.cfg, self.loader, self.selector = cfg, loader, selector
        self.info = dist_info()
        self.device = resolve_device(cfg.device, self.info)
        set_determinism(cfg.deterministic)
        seed_everything(cfg.seed + self.info.rank)
        self.dtype = autocast_dtype(cfg.precision, self.device)
        self.module = model.to(self.device)
        self._enable_checkpointing(cfg.gradient_checkpointing)
        self.model: torch.nn.Module = self.module
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # A model that freezes part of itself for some steps (self-distillation's head warm-up) says so.
            unused = bool(getattr(self.module, "ddp_find_unused_parameters", False))
            self.model = DistributedDataParallel(self.module, device_ids=ids, find_unused_parameters=unused)
        self.optimizer = build_optimizer(self.module, cfg.optimizer, fused=self.device.type == "cuda")
        self.total_steps = self._total_steps()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)
        self.counters = ComputeCounters()
        self.step, self.epoch, self.last_loss = 0, 0, float("nan")
        self.resumed_from: int | None = None
        self.last_checkpoint: str | None = None
        self._subset: set[Any] | None = None
        self._train_flops, self._score_flops = PerShapeFlops(), PerShapeFlops()
        self._pending: dict[str, float] = {"samples": 0, "kept": 0, "scored": 0, "flops": 0.0, "train_flops": 0.0,
                                           "loss": 0.0, "micro": 0}
        self._global_batch = self._samples_per_step()
        factor = lr_factor(cfg.schedule, self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda step: factor(self._schedule_position(step)))
        self._resume()
        self.logger = TrainLogger(cfg.output_dir, self.info.rank, self.step, self.total_steps,
                                  tensorboard=cfg.tensorboard, progress=cfg.progress)
        self.timer = DeviceTimer(self.device)
        self._wall_origin = time.perf_counter()

    # -- setup ---------------------------------------------------------------------------------------
    def _enable_checkpointing(self, enabled: bool) -> None:
        if not enabled:
            return
        # timm's name for it, which VisionLanguageModel (and its timm image encoders) follow.
        setter = getattr(self.module, "set_grad_checkpointing", None)
        if setter is None:
            raise ConfigError("gradient_checkpointing=True but the model has no set_grad_checkpointing()")
        setter(True)

    def _samples_per_step(self) -> int | None:
        """Samples one optimizer step draws over all ranks (what ``budget.flops_of_steps`` multiplies)."""
        batch_size = getattr(self.loader, "batch_size", None)
        if self.cfg.budget.flops_of_steps is not None and not isinstance(batch_size, int):
            raise ConfigError("budget.flops_of_steps needs a loader with an int batch_size (ShardLoader has one)")
        if not isinstance(batch_size, int):
            return None
        return batch_size * self.cfg.accumulation_steps * self.info.world_size

    def _schedule_position(self, step: int) -> float:
        """Where the LR schedule stands after ``step`` optimizer steps.

        Under an equal-compute budget (``flops_of_steps`` without ``schedule.total_steps``) it is the plain
        steps' worth of FLOPs spent so far: how many optimizer steps that budget allows depends on what the
        selector keeps and scores, so a step-count horizon would leave the LR high when the FLOPs run out.
        """
        if self.cfg.budget.flops_of_steps is None or self.cfg.schedule.total_steps is not None:
            return float(step)
        per_step = plain_steps_flops(1, self._global_batch or 0, self.counters)
        return float(step) if per_step is None else self.counters.flops / per_step

    def _budget_reason(self) -> str | None:
        return budget_reason(self.cfg.budget, self.counters, self.epoch, self._global_batch)

    def _total_steps(self) -> int:
        sched, budget = self.cfg.schedule, self.cfg.budget
        if sched.total_steps is not None:
            return sched.total_steps
        if budget.flops_of_steps is not None:  # counted in plain steps' worth of FLOPs: see _schedule_position
            return budget.flops_of_steps
        if budget.max_steps is not None:
            return budget.max_steps
        if budget.max_epochs is not None:
            return budget.max_epochs * -(-len(self.loader) // self.cfg.accumulation_steps)
        raise ConfigError("the cosine schedule needs a horizon: set schedule.total_steps, budget.max_steps or "
                          "budget.max_epochs")

    # -- resume --------------------------------------------------------------------------------------
    def _resume(self) -> None:
        if not self.cfg.checkpoint.resume:
            return
        found = self._agree_on_checkpoint()
        if found is None:
            return
        state = found.state
        if int(state["world_size"]) != self.info.world_size:
            raise ConfigError(f"checkpoint {found.url} was taken with world_size={state['world_size']}, this run "
                              f"has {self.info.world_size}; resume with the same number of processes")
        ckpt.load_model_bytes(self.module, found.files["model.safetensors"])
        ckpt.load_optimizer_bytes(self.optimizer, found.files["optimizer.safetensors"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        mine = json.loads(found.files[f"rank-{self.info.rank}.json"])
        self.loader.load_state_dict(mine["loader"])
        if self.selector is not None:
            from rfm_curation.selectors import state_from_bytes

            self.selector.load_state_dict(state_from_bytes(found.files[f"selector-rank-{self.info.rank}.safetensors"]))
            self._refresh_subset()
        ckpt.set_rng_state(mine["rng"])
        self.counters = ComputeCounters.from_dict(state["counters"])
        last = state["last_loss"]
        self.step, self.epoch = found.step, int(mine["loader"]["epoch"])
        self.last_loss = float("nan") if last is None else float(last)
        self.resumed_from, self.last_checkpoint = found.step, found.url
        if self.info.rank == 0:
            truncate_jsonl(io.join(self.cfg.output_dir, METRICS_FILE), self.step)
        truncate_jsonl(io.join(self.cfg.output_dir, kept_ids_file(self.info.rank)), self.step)

    def _agree_on_checkpoint(self) -> ckpt.LoadedCheckpoint | None:
        """Rank 0 picks the newest valid checkpoint; the others load that same one."""
        found = ckpt.load_latest(self.cfg.output_dir) if self.info.rank == 0 else None
        if not self.info.distributed:
            return found
        chosen: list[Any] = [found.url if found is not None else None]
        dist.broadcast_object_list(chosen, src=0)
        if self.info.rank == 0 or chosen[0] is None:
            return found
        return ckpt.validate(str(chosen[0]))

    # -- loop ----------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self._save_config()
        self._wall_origin = time.perf_counter() - self.counters.wall_s  # wall time continues across resumes
        reason = self._budget_reason()
        while reason is None:
            reason = self._run_epoch()
        if self.last_checkpoint is None or not self.last_checkpoint.endswith(ckpt.step_dir_name(self.step)):
            self._checkpoint()
        if self.info.distributed:
            dist.barrier()
        return TrainResult(self.step, self.epoch, reason, self.counters, self.last_loss, self.last_checkpoint,
                           self.cfg.output_dir, self.resumed_from)

    def _run_epoch(self) -> str | None:
        """One (possibly resumed) epoch; returns a stop reason or None when the epoch ended."""
        self.loader.set_epoch(self.epoch)
        # A run resumed after the epoch's last full batch finds only a dropped remainder: that is the end of
        # the epoch, not an empty dataset. Only an epoch that starts at its beginning and yields nothing is.
        started_mid_epoch = int(self.loader.state_dict().get("consumed", 0)) > 0
        batches = 0
        for batch in self.loader:
            batches += 1
            self._micro_step(batch)
            if self._pending["micro"] == self.cfg.accumulation_steps:
                reason = self._optimizer_step()
                if reason is not None:
                    return reason
        if batches == 0 and not started_mid_epoch:
            raise EmptyDatasetError(f"the loader yielded no batch in epoch {self.epoch} on rank {self.info.rank}: "
                                    "the dataset (or this rank's share of it) is empty")
        if self._pending["micro"]:  # a partial accumulation window closes the epoch
            reason = self._optimizer_step()
            if reason is not None:
                return reason
        self._sync_epoch()
        return self._budget_reason()

    def _sync_epoch(self) -> None:
        """End the epoch as soon as the loader's position says it is over (also on its last step, so that a
        checkpoint taken there already has the selector's end-of-epoch state)."""
        if int(self.loader.state_dict()["epoch"]) > self.epoch:
            self._end_epoch()

    def _end_epoch(self) -> None:
        if self.selector is not None and self.selector.phase != _FIXED:
            self.selector.end_epoch()
            self._refresh_subset()
        self.epoch += 1
        self.counters.epochs_completed = self.epoch

    def _refresh_subset(self) -> None:
        assert self.selector is not None
        if self.selector.phase != _FIXED or self._subset is not None:
            return
        self._subset = set(self.selector.subset().tolist())
        if not self._subset:
            raise EmptyDatasetError("online selection kept no sample: the fixed training subset is empty "
                                    "(raise the selector's ratio, or check the embeddings for collapse)")

    # -- one micro-batch -----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _micro_step(self, batch: Mapping[str, Any]) -> None:
        ids = list(batch["sample_id"])
        batch = _to_device(batch, self.device)
        with self.timer:
            keep = self._select(batch, ids)
            kept = len(ids) if keep is None else int(keep.sum())
            if kept or self.info.distributed:  # every DDP rank must join the gradient all-reduce
                self._forward_backward(batch, keep, kept)
        self._pending["samples"] += len(ids)
        self._pending["kept"] += kept
        self._pending["micro"] += 1

    def _select(self, batch: Mapping[str, Any], ids: list[Any]) -> torch.Tensor | None:
        if self.selector is None:
            return None
        if self._subset is not None:
            return torch.tensor([i in self._subset for i in ids], dtype=torch.bool, device=self.device)
        from rfm_curation.selectors import joint_embedding

        out = self._score(batch)
        losses = out.get("per_sample_loss")
        mask = self.selector.select(ids, joint_embedding(out["image_emb"].float().cpu().numpy(),
                                                          out["text_emb"].float().cpu().numpy()),
                                    None if losses is None else losses.float().cpu().numpy())
        self._pending["scored"] += len(ids)
        phase = self.selector.phase.value
        kept_ids = [i for i, k in zip(ids, mask.tolist(), strict=True) if k]
        self.logger.kept_ids(self.step + 1, self.epoch, phase, kept_ids)
        self._refresh_subset()
        return torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device)

    def _score(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        def forward() -> dict[str, torch.Tensor]:
            with torch.no_grad(), self._autocast():
                out: dict[str, torch.Tensor] = self.module(batch, keep=None)
            return out

        out, per_sample = self._score_flops.run(batch, forward, len(batch["sample_id"]))
        self.counters.score_flops_per_sample = per_sample  # the latest shape's figure (shown in logs)
        self._pending["flops"] += per_sample * len(batch["sample_id"])
        return out

    def _forward_backward(self, batch: Mapping[str, Any], keep: torch.Tensor | None, kept: int) -> None:
        last = self._pending["micro"] + 1 == self.cfg.accumulation_steps
        sync = contextlib.nullcontext() if last or not self.info.distributed else self.model.no_sync()  # type: ignore[operator]

        def run() -> float:
            with sync:
                with self._autocast():
                    out = self.model(batch, keep=keep)
                loss = out["loss"]
                self.scaler.scale(loss / self.cfg.accumulation_steps).backward()
            return float(loss.detach())

        loss, per_sample = self._train_flops.run(batch, run, kept)
        if kept:
            self.counters.train_flops_per_sample = per_sample  # the latest shape's figure (shown in logs)
        self._pending["loss"] += loss
        self._pending["flops"] += per_sample * kept
        self._pending["train_flops"] += per_sample * kept

    # -- one optimizer step --------------------------------------------------------------------------
    def _optimizer_step(self) -> str | None:
        with self.timer:
            self.scaler.unscale_(self.optimizer)
            clip = self.cfg.optimizer.grad_clip
            grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip or float("inf"))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            # Per-step model updates that follow the weights (EMA teacher, schedules): after each step.
            hook = getattr(self.module, "after_optimizer_step", None)
            if hook is not None:
                hook(self.step + 1, self.total_steps, self.optimizer)
        self.step += 1
        self._sync_epoch()
        micro = self._pending["micro"]
        self.last_loss = self._pending["loss"] / micro
        self._account()
        self.scheduler.step()  # after the accounting: a FLOP-paced schedule reads this step's FLOPs
        if self.step % self.cfg.log_every == 0:
            self._log(float(grad_norm), int(micro))
        every = self.cfg.checkpoint.every_steps
        if every is not None and self.step % every == 0:
            self._checkpoint()
        return self._budget_reason()

    def _account(self) -> None:
        """Add this step's samples / FLOPs / seconds, summed over ranks so that every rank agrees."""
        p = self._pending
        sums = torch.tensor([p["samples"], p["kept"], p["scored"], p["flops"], p["train_flops"], self.timer.total],
                            dtype=torch.float64)
        wall = torch.tensor([time.perf_counter() - self._wall_origin], dtype=torch.float64)
        if self.info.distributed:
            dev = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            sums, wall = sums.to(dev), wall.to(dev)
            dist.all_reduce(sums)
            dist.all_reduce(wall, op=dist.ReduceOp.MAX)  # all ranks see the same clock: same budget decision
        s = sums.cpu().tolist()
        c = self.counters
        c.steps = self.step
        c.samples += int(s[0])
        c.kept_samples += int(s[1])
        c.scored_samples += int(s[2])
        c.flops += s[3]
        c.train_flops += s[4]
        c.device_s += s[5]
        c.wall_s = float(wall.item())
        self.timer.total = 0.0
        self._pending = {k: 0 for k in p}

    def _log(self, grad_norm: float, micro: int) -> None:
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "loss": self.last_loss,
                                  "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                                  "micro_batches": micro, **self.counters.to_dict()}
        if self.selector is not None:
            record["phase"] = self.selector.phase.value
        self.logger.metrics(record)
        self.logger.progress(self.step, self.last_loss, record["lr"])

    # -- checkpoints ---------------------------------------------------------------------------------
    def _save_config(self) -> None:
        if self.info.rank == 0:
            text = json.dumps(asdict(self.cfg), indent=1, default=lambda v: getattr(v, "value", str(v)))
            io.write_text(io.join(self.cfg.output_dir, "train_config.json"), text)

    def _rank_files(self, dir_url: str) -> dict[str, Any]:
        rank = self.info.rank
        mine = {"loader": self.loader.state_dict(), "rng": ckpt.rng_state()}
        records = {f"rank-{rank}.json": ckpt.write_file(dir_url, f"rank-{rank}.json", json.dumps(mine).encode())}
        if self.selector is not None:
            from rfm_curation.selectors import state_to_bytes

            name = f"selector-rank-{rank}.safetensors"
            records[name] = ckpt.write_file(dir_url, name, state_to_bytes(self.selector.state_dict()))
        return records

    def _checkpoint(self) -> None:
        """Every rank writes its own files, rank 0 the shared ones and, last, trainer.json + latest."""
        dir_url = io.join(ckpt.checkpoints_url(self.cfg.output_dir), ckpt.step_dir_name(self.step))
        self.logger.flush()
        records = self._rank_files(dir_url)
        if self.info.distributed:
            gathered: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, records)
            records = {k: v for r in gathered for k, v in r.items()}
        if self.info.rank == 0:
            records["model.safetensors"] = ckpt.write_file(dir_url, "model.safetensors",
                                                           ckpt.model_to_bytes(self.module))
            records["optimizer.safetensors"] = ckpt.write_file(dir_url, "optimizer.safetensors",
                                                               ckpt.optimizer_to_bytes(self.optimizer))
            ckpt.commit(self.cfg.output_dir, self.step, self._trainer_state(), records)
            ckpt.prune(self.cfg.output_dir, self.cfg.checkpoint.keep_last, self.step)
        if self.info.distributed:
            dist.barrier()
        self.last_checkpoint = dir_url

    def _trainer_state(self) -> dict[str, Any]:
        scheduler = self.scheduler.state_dict()  # lr_lambdas is [None] for a closure: JSON-safe
        return {"step": self.step, "epoch": self.epoch, "world_size": self.info.world_size,
                "last_loss": self.last_loss if np.isfinite(self.last_loss) else None,
                "counters": self.counters.to_dict(), "scheduler": scheduler, "scaler": self.scaler.state_dict(),
                "selector_phase": None if self.selector is None else self.selector.phase.value,
                "config": json.loads(json.dumps(asdict(self.cfg), default=lambda v: getattr(v, "value", str(v))))}


def iter_metrics(output_dir: str) -> Iterator[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (a convenience for comparing runs)."""
    from rfm_models.train.logging import read_jsonl

    yield from read_jsonl(io.join(output_dir, METRICS_FILE))
