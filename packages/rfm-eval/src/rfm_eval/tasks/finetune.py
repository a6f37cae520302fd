"""Full fine-tuning: the image encoder plus a linear head trained end to end on the train split.

Small by default (a few epochs, AdamW, cosine decay) so it fits a CPU suite; raise ``epochs`` / ``max_steps``
on a GPU. Multi-label protocols train with masked BCE (uncertain labels carry no loss), multi-class ones with
cross-entropy over the samples with exactly one positive class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset, collate
from rfm_data.transforms import cxr_eval_transform, cxr_train_transform
from rfm_eval.features import split_size
from rfm_eval.protocol import LabelMode, Protocol, class_index, label_matrix
from rfm_eval.tasks.base import Predictions, TaskContext, TaskOutput, register_task
from rfm_eval.tasks.common import class_counts
from rfm_eval.tasks.probes import _ScoresTask

__all__ = ["FineTuneTask"]


def _targets(labels: list[dict[str, int]], protocol: Protocol) -> Tensor:
    if protocol.mode == LabelMode.MULTI_CLASS:
        return torch.from_numpy(class_index(labels, protocol.observations))
    return torch.from_numpy(label_matrix(labels, protocol.observations, protocol.absent_label).astype(np.float32))


def _loss(logits: Tensor, y: Tensor, mode: LabelMode) -> Tensor:
    if mode == LabelMode.MULTI_CLASS:
        keep = y >= 0
        return nn.functional.cross_entropy(logits[keep], y[keep]) if keep.any() else logits.sum() * 0
    mask = (y >= 0).float()
    bce = nn.functional.binary_cross_entropy_with_logits(logits, y.clamp(min=0), reduction="none")
    return (bce * mask).sum() / mask.sum().clamp(min=1)


class _Net(nn.Module):
    def __init__(self, encoder: nn.Module, out_dim: int, n_classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(out_dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.encoder(x))
        return out


@register_task("finetune")
class FineTuneTask(_ScoresTask):
    """Fine-tune the whole image encoder with a linear head.

    Args:
        epochs: passes over the train split.
        max_steps: stop after this many optimizer steps (None: all epochs).
        lr: AdamW learning rate of the encoder (the head uses 10x).
        weight_decay: AdamW weight decay.
        batch_size: training batch size.
    """

    def __init__(self, epochs: int = 2, max_steps: int | None = None, lr: float = 1e-4, weight_decay: float = 0.05,
                 batch_size: int = 32) -> None:
        if epochs < 1:
            raise ConfigError(f"finetune epochs={epochs}: use at least 1")
        self.epochs, self.max_steps, self.lr, self.wd, self.batch_size = epochs, max_steps, lr, weight_decay, batch_size

    def _train(self, net: _Net, ctx: TaskContext) -> dict[str, Any]:
        if split_size(ctx.dataset, ctx.train_split) == 0:
            raise ConfigError(f"finetune: train split {ctx.train_split!r} is empty; set train_split to one with data")
        ds = ShardDataset(ctx.dataset, transform=cxr_train_transform(ctx.model.image_size), split=ctx.train_split,
                          seed=ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        loader: DataLoader[Any] = DataLoader(ds, batch_size=self.batch_size, shuffle=True, generator=gen,
                                             collate_fn=collate, drop_last=len(ds) > self.batch_size)
        total = self.epochs * len(loader) if self.max_steps is None else min(self.max_steps, self.epochs * len(loader))
        opt = torch.optim.AdamW([{"params": net.encoder.parameters(), "lr": self.lr},
                                 {"params": net.head.parameters(), "lr": 10 * self.lr}], weight_decay=self.wd)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
        net.train()
        losses: list[float] = []
        with tqdm(total=total, desc="finetune", disable=not ctx.progress, leave=False) as bar:
            for epoch in range(self.epochs):
                ds.set_epoch(epoch)
                for batch in loader:
                    if len(losses) >= total:
                        break
                    y = _targets(batch["labels"], ctx.protocol).to(ctx.model.device)
                    loss = _loss(net(batch["image"].to(ctx.model.device)), y, ctx.protocol.mode)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
                    sched.step()
                    losses.append(float(loss.item()))
                    bar.update(1)
        return {"steps": len(losses), "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None, "train_samples": len(ds)}

    @torch.inference_mode()
    def _predict(self, net: _Net, ctx: TaskContext) -> tuple[list[dict[str, Any]], np.ndarray]:
        ds: Dataset[Any] = ShardDataset(ctx.dataset, transform=cxr_eval_transform(ctx.model.image_size),
                                        split=ctx.split)
        loader: DataLoader[Any] = DataLoader(ds, batch_size=ctx.batch_size, collate_fn=collate)
        net.eval()
        rows: list[dict[str, Any]] = []
        scores = []
        for batch in loader:
            logits = net(batch["image"].to(ctx.model.device)).float()
            prob = logits.softmax(dim=1) if ctx.protocol.mode == LabelMode.MULTI_CLASS else logits.sigmoid()
            scores.append(prob.cpu().numpy())
            rows.extend({k: batch[k][i] for k in ("sample_id", "patient_id", "labels")}
                        for i in range(len(batch["sample_id"])))
        return rows, np.concatenate(scores)

    def predict(self, ctx: TaskContext) -> TaskOutput:
        encoder = ctx.model.image_encoder()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            net = _Net(encoder, encoder.out_dim, len(ctx.protocol.observations)).to(ctx.model.device)
            train = self._train(net, ctx)
        rows, score = self._predict(net, ctx)
        labels = [dict(r["labels"] or {}) for r in rows]
        y = _targets(labels, ctx.protocol).numpy()
        y = y.astype(np.int8) if y.ndim == 2 else y
        meta = {"classes": list(ctx.protocol.observations), "mode": ctx.protocol.mode.value, "tags": ["@100%"]}
        preds = Predictions([str(r["sample_id"]) for r in rows], [str(r["patient_id"] or r["sample_id"]) for r in rows],
                            {"y": y, "score@100%": score.astype(np.float32)}, meta)
        return TaskOutput(preds, {"training": train, "counts_test": class_counts(y, ctx.protocol)})
