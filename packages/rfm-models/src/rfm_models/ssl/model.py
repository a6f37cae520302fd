"""The self-distillation model: a student ViT and its EMA teacher, each with DINO (and iBOT) heads.

``model(batch, keep=None)`` follows the trainer contract (:mod:`rfm_models.train.trainer`): it takes a batch of
multi-crop views (``global_crops`` ``(B, G, 1, S, S)``, ``local_crops`` ``(B, L, 1, s, s)``, see
:mod:`rfm_models.ssl.multicrop`) and returns ``loss`` and its terms. The teacher sees the global crops only;
the student sees all crops, with iBOT masks on some of its global crops. After every optimizer step the
trainer calls :meth:`SelfDistillationModel.after_optimizer_step`, which moves the teacher towards the student
(EMA with a cosine momentum schedule) and applies the weight-decay schedule. Teacher, centres and the step
counter are parameters / buffers, so trainer checkpoints resume them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rfm_data.errors import ConfigError
from rfm_models.encoders import ImageEncoder, create_image_encoder, image_encoders
from rfm_models.ssl import losses
from rfm_models.ssl.config import SelfDistillationConfig
from rfm_models.ssl.heads import DINOHead
from rfm_models.ssl.schedules import cosine, linear_warmup
from rfm_models.ssl.vit import tokens

__all__ = ["SelfDistillationModel", "build_self_distillation"]


class SelfDistillationModel(nn.Module):
    """Student / EMA-teacher ViTs with DINO + iBOT heads; build it with :func:`build_self_distillation`."""

    center: Tensor
    patch_center: Tensor
    steps_done: Tensor

    def __init__(self, config: SelfDistillationConfig, student: ImageEncoder, teacher: ImageEncoder) -> None:
        super().__init__()
        self.config = config
        dim = student.out_dim
        self.student, self.teacher = student, teacher
        self.student_head = DINOHead(dim, config.head)
        self.teacher_head = DINOHead(dim, config.head)
        # A shared iBOT head is the DINO head itself (not registered twice: one copy in the state dict).
        self.student_ibot_head = DINOHead(dim, config.head) if config.ibot_separate_head else None
        self.teacher_ibot_head = DINOHead(dim, config.head) if config.ibot_separate_head else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.register_buffer("center", torch.zeros(1, config.head.out_dim))
        self.register_buffer("patch_center", torch.zeros(1, config.head.out_dim))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.normalize = losses.teacher_normalizers.create(losses.TeacherNorm(config.loss.teacher_norm).value)
        self.copy_student_to_teacher()
        if config.grad_checkpointing:
            self.set_grad_checkpointing(True)

    # -- teacher -------------------------------------------------------------------------------------
    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        pairs: list[tuple[nn.Module, nn.Module]] = [(self.student, self.teacher),
                                                     (self.student_head, self.teacher_head)]
        if self.student_ibot_head is not None and self.teacher_ibot_head is not None:
            pairs.append((self.student_ibot_head, self.teacher_ibot_head))
        return pairs

    def _ibot_heads(self) -> tuple[nn.Module, nn.Module]:
        """(student, teacher) iBOT heads: the separate ones, or the DINO heads when shared."""
        if self.student_ibot_head is not None and self.teacher_ibot_head is not None:
            return self.student_ibot_head, self.teacher_ibot_head
        return self.student_head, self.teacher_head

    @torch.no_grad()
    def copy_student_to_teacher(self) -> None:
        """Teacher ← student (at construction and after loading a checkpoint into the student)."""
        for s, t in self._pairs():
            t.load_state_dict(s.state_dict())
            t.requires_grad_(False)  # never in the optimizer, never a gradient

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher <- momentum * teacher + (1 - momentum) * student`` (same on every DDP rank, since the
        student weights are synchronised there)."""
        for s, t in self._pairs():
            t_params = [p.data for p in t.parameters()]
            s_params = [p.data.to(p.dtype) for p in s.parameters()]
            torch._foreach_mul_(t_params, momentum)
            torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)

    # -- trainer hooks -------------------------------------------------------------------------------
    @property
    def ddp_find_unused_parameters(self) -> bool:
        """A frozen backbone (head warm-up) leaves parameters without gradients, which DDP must be told."""
        return self.config.continual.freeze_backbone_steps > 0

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the student's activations in backward (the teacher runs without grad anyway)."""
        self.student.set_grad_checkpointing(enable)
        self.config.grad_checkpointing = enable

    def backbone_frozen(self) -> bool:
        """Whether the student backbone is frozen now (the first ``freeze_backbone_steps`` steps)."""
        return int(self.steps_done) < self.config.continual.freeze_backbone_steps

    def teacher_temp(self) -> float:
        """The teacher temperature at the current step (linear warm-up)."""
        lo = self.config.loss
        return linear_warmup(lo.teacher_temp_warmup, lo.teacher_temp, int(self.steps_done),
                             lo.teacher_temp_warmup_steps)

    def momentum(self, step: int, total_steps: int) -> float:
        """Teacher EMA momentum after ``step`` of ``total_steps`` (cosine to ``momentum_end``)."""
        s = self.config.schedule
        return cosine(s.momentum_start, s.momentum_end, step, total_steps)

    def after_optimizer_step(self, step: int, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
        """Called by the trainer after optimizer step ``step`` (1-based): EMA teacher update, step counter,
        weight decay for the next step."""
        self.update_teacher(self.momentum(step, total_steps))
        self.steps_done.fill_(step)
        s = self.config.schedule
        if s.weight_decay_start is None or s.weight_decay_end is None:
            return
        wd = cosine(s.weight_decay_start, s.weight_decay_end, step, total_steps)
        for group in optimizer.param_groups:
            if any(p.ndim >= 2 for p in group["params"]):  # the decayed group of build_optimizer
                group["weight_decay"] = wd

    # -- forward -------------------------------------------------------------------------------------
    def _masks(self, n: int, patches: int, device: torch.device) -> Tensor:
        """``(n, patches)`` bool: the first ``mask_probability * n`` crops masked at ratios spread over
        ``mask_ratio``, positions from torch's global RNG (checkpointed by the trainer)."""
        lo = self.config.loss
        masks = torch.zeros(n, patches, dtype=torch.bool)
        n_masked = round(lo.mask_probability * n)
        ratios = torch.linspace(lo.mask_ratio[0], lo.mask_ratio[1], max(n_masked, 1))
        for i in range(n_masked):
            k = math.ceil(float(ratios[i]) * patches)
            masks[i, torch.randperm(patches)[:k]] = True
        return masks.to(device)

    @torch.no_grad()
    def _teacher_targets(self, crops: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        cls, patches = tokens(self.teacher.model, crops)
        temp = self.teacher_temp()
        cls_logits, patch_logits = self.teacher_head(cls), self._ibot_heads()[1](patches[masks])
        cls_t = self.normalize(cls_logits, self.center, temp)
        patch_t = self.normalize(patch_logits, self.patch_center, temp)
        if self.training and losses.TeacherNorm(self.config.loss.teacher_norm) is losses.TeacherNorm.CENTERING:
            losses.update_center(self.center, cls_logits, self.config.loss.center_momentum)
            if patch_logits.shape[0]:
                losses.update_center(self.patch_center, patch_logits, self.config.loss.center_momentum)
        return cls_t, patch_t

    def _student(self, crops: Tensor, masks: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.backbone_frozen():
            with torch.no_grad():
                return tokens(self.student.model, crops, masks, self.mask_token)
        return tokens(self.student.model, crops, masks, self.mask_token)

    def forward(self, batch: Mapping[str, Any], keep: Tensor | None = None) -> dict[str, Tensor]:
        """Loss of one multi-crop batch (see the module docstring); ``keep`` must be None."""
        if keep is not None:
            raise ConfigError("self-distillation does not support online selection (selector.name must be null)")
        g = _views(batch, "global_crops")
        b, n_g = g.shape[:2]
        globals_ = g.transpose(0, 1).reshape(n_g * b, *g.shape[2:])  # view-major: crop v of all images together
        n_patches = _n_patches(self.student.model, globals_)
        masks = self._masks(n_g * b, n_patches, globals_.device)
        teacher_cls, teacher_patch = self._teacher_targets(globals_, masks)
        s_cls, s_patch = self._student(globals_, masks)
        student_logits = list(self.student_head(s_cls).chunk(n_g))
        local = batch.get("local_crops")
        if isinstance(local, Tensor) and local.shape[1] > 0:
            loc = local.transpose(0, 1).reshape(local.shape[1] * b, *local.shape[2:])
            l_cls, _ = self._student(loc, None)
            student_logits += list(self.student_head(l_cls).chunk(local.shape[1]))
        lo = self.config.loss
        dino = losses.dino_loss(student_logits, list(teacher_cls.chunk(n_g)), lo.student_temp)
        ibot = losses.ibot_loss(self._ibot_heads()[0](s_patch[masks]), teacher_patch, lo.student_temp)
        koleo = losses.koleo_loss(s_cls[:b]) if b > 1 else s_cls.sum() * 0.0
        loss = lo.dino_weight * dino + lo.ibot_weight * ibot + lo.koleo_weight * koleo
        return {"loss": loss, "dino_loss": dino.detach(), "ibot_loss": ibot.detach(), "koleo_loss": koleo.detach(),
                "image_emb": nn.functional.normalize(s_cls[:b].detach(), dim=-1)}


def _views(batch: Mapping[str, Any], key: str) -> Tensor:
    views = batch.get(key)
    if not isinstance(views, Tensor) or views.ndim != 5:
        got = tuple(views.shape) if isinstance(views, Tensor) else type(views).__name__
        raise ValueError(f"batch[{key!r}] must be (B, views, 1, H, W) multi-crop views, got {got}: use "
                         "rfm_models.ssl.MultiCropd as the loader's transform")
    return views


def _n_patches(vit: nn.Module, crops: Tensor) -> int:
    grid = vit.patch_embed.dynamic_feat_size(tuple(crops.shape[-2:]))  # type: ignore[union-attr,operator]
    return int(grid[0] * grid[1])


def _check_backbone(name: str, encoder: ImageEncoder) -> None:
    if not hasattr(encoder.model, "patch_embed") or not hasattr(encoder.model, "blocks"):
        vits = [n for n in image_encoders.names() if "vit" in n]
        raise ConfigError(f"self_distillation.backbone={name!r} is not a ViT (patch tokens and a mask token are "
                          f"needed); choose one of {vits}")


def build_self_distillation(config: SelfDistillationConfig, seed: int | None = 0,
                            load_init: bool = True) -> SelfDistillationModel:
    """Build (and, with ``continual.init_from``, initialise) the model of ``config``.

    Args:
        config: the architecture and recipe (validated here).
        seed: seed of the random initialisation (None: torch's current state).
        load_init: load ``continual.init_from`` (an export being loaded skips it: its weights come after).

    Raises:
        ConfigError: an invalid field, a backbone that is not a ViT, or an ``init_from`` checkpoint that does
            not fit (missing heads with ``heads=load`` are listed with the choices).
    """
    config.validate()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        options = {**config.backbone_options, "image_size": config.image_size}
        student = create_image_encoder(config.backbone, **options)
        _check_backbone(config.backbone, student)
        teacher = create_image_encoder(config.backbone, **options)
        model = SelfDistillationModel(config, student, teacher)
    if load_init and config.continual.init_from:
        from rfm_models.ssl.continual import initialise_from

        initialise_from(model, config.continual.init_from, config.continual.heads)
    return model
