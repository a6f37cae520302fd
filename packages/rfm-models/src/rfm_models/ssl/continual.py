"""Continual pretraining: initialise a :class:`SelfDistillationModel` from a local checkpoint.

Accepted checkpoints (safetensors only, never unpickled):

* an ``rfm-self-distillation`` directory: the *teacher* backbone and heads (the teacher is the better model;
  DINO-style continual pretraining restarts student and teacher from it);
* an ``rfm-vision-language`` directory: its image encoder (e.g. a CLIP-pretrained ViT), backbone only;
* a timm ViT ``.safetensors`` file or a directory holding ``model.safetensors``, backbone only.

Position embeddings trained at another resolution are resampled to this model's grid
(``timm.layers.resample_abs_pos_embed``). With ``heads=load`` a checkpoint without heads is refused, naming the
missing tensors and the choices.
"""

from __future__ import annotations

import math

import torch
from timm.layers.pos_embed import resample_abs_pos_embed
from torch import Tensor, nn

from rfm_data.errors import ConfigError
from rfm_models.ssl.config import HeadInit
from rfm_models.ssl.model import SelfDistillationModel
from rfm_models.weights import check_state, read_safetensors

__all__ = ["BACKBONE_PREFIXES", "initialise_from", "resample_position_embedding"]

# Where a backbone lives in each checkpoint kind, tried in order (self-distillation teacher, CLIP image tower).
BACKBONE_PREFIXES = ("teacher.model.", "image_encoder.model.")
HEAD_PREFIXES = {"teacher_head.": ("student_head", "teacher_head"),
                 "teacher_ibot_head.": ("student_ibot_head", "teacher_ibot_head")}


def _backbone_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in BACKBONE_PREFIXES:
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if found:
            return found
    return state  # a plain timm state dict


def resample_position_embedding(state: dict[str, Tensor], vit: nn.Module, source: str) -> dict[str, Tensor]:
    """``state`` with its ``pos_embed`` resampled to ``vit``'s patch grid when the resolutions differ."""
    given, expected = state.get("pos_embed"), vit.state_dict().get("pos_embed")
    if given is None or expected is None or given.shape == expected.shape:
        return state
    prefix = int(getattr(vit, "num_prefix_tokens", 1))
    old, new = given.shape[1] - prefix, expected.shape[1] - prefix
    old_side, new_side = math.isqrt(old), math.isqrt(new)
    if old_side**2 != old or new_side**2 != new or given.shape[2] != expected.shape[2]:
        raise ConfigError(f"{source}: pos_embed {tuple(given.shape)} cannot be resampled to {tuple(expected.shape)} "
                          "(non-square grid or another width: is it the same backbone?)")
    out = dict(state)
    out["pos_embed"] = resample_abs_pos_embed(given, new_size=[new_side, new_side], old_size=[old_side, old_side],
                                              num_prefix_tokens=prefix)
    return out


def _load_heads(model: SelfDistillationModel, state: dict[str, Tensor], source: str) -> None:
    for prefix, targets in HEAD_PREFIXES.items():
        module = getattr(model, targets[0])
        if module is None:
            continue
        expected = module.state_dict()
        given = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing = [prefix + k for k in expected if k not in given]
        if missing:
            raise ConfigError(
                f"continual.init_from={source}: continual.heads=load but the checkpoint has no "
                f"{prefix.rstrip('.')} tensors (missing {len(missing)}, e.g. {missing[:4]}). Choices: "
                "continual.heads=reinit (new heads, warmed up with continual.freeze_backbone_steps), or "
                "continual.init_from=<an rfm-self-distillation directory that has the heads>")
        check_state(expected, given, f"{source} ({prefix.rstrip('.')})")
        for name in targets:
            getattr(model, name).load_state_dict(given)


def initialise_from(model: SelfDistillationModel, url: str, heads: HeadInit) -> None:
    """Load the backbone (and with ``heads=load`` the heads) of checkpoint ``url`` into student and teacher.

    Raises:
        ConfigError: unreadable or pickled checkpoint, a backbone tensor missing or of another shape (named),
            or ``heads=load`` on a checkpoint without heads (the missing tensors and the choices named).
    """
    state = read_safetensors(url)
    vit = model.student.model
    backbone = resample_position_embedding(_backbone_state(state), vit, url)
    check_state(vit.state_dict(), backbone, f"continual.init_from={url} (backbone)")
    with torch.no_grad():
        vit.load_state_dict(backbone)
        if HeadInit(heads) is HeadInit.LOAD:
            _load_heads(model, state, url)
        if "mask_token" in state and state["mask_token"].shape == model.mask_token.shape:
            model.mask_token.copy_(state["mask_token"])
    model.copy_student_to_teacher()
