"""CLS and patch tokens of a timm VisionTransformer, with iBOT mask tokens swapped in before the position
embeddings (the same steps as timm's ``forward_features``, which has no masking hook)."""

from __future__ import annotations

import torch
from timm.models import checkpoint_seq
from torch import Tensor, nn

__all__ = ["tokens"]


def tokens(vit: nn.Module, images: Tensor, masks: Tensor | None = None,
           mask_token: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(cls (B, D), patches (B, N, D))`` after the final norm.

    Args:
        vit: a timm ``VisionTransformer`` (built with ``dynamic_img_size=True`` by the rfm image encoders).
        images: ``(B, 1, H, W)``.
        masks: ``(B, N)`` bool, True where the patch embedding is replaced by ``mask_token`` ``(1, D)``.
        mask_token: the learned mask embedding (needed with ``masks``).
    """
    x = vit.patch_embed(images)  # type: ignore[operator]
    if masks is not None and mask_token is not None:
        # torch.where keeps mask_token in the graph even when nothing is masked (DDP needs a gradient for it).
        m = masks.reshape(*x.shape[:-1], 1) if x.ndim == 4 else masks.unsqueeze(-1)
        x = torch.where(m, mask_token.to(x.dtype).view(*([1] * (x.ndim - 1)), -1), x)
    x = vit._pos_embed(x)  # type: ignore[operator]
    x = vit.patch_drop(x)  # type: ignore[operator]
    x = vit.norm_pre(x)  # type: ignore[operator]
    if getattr(vit, "grad_checkpointing", False) and torch.is_grad_enabled():
        x = checkpoint_seq(vit.blocks, x)
    else:
        x = vit.blocks(x)  # type: ignore[operator]
    x = vit.norm(x)  # type: ignore[operator]
    prefix = int(getattr(vit, "num_prefix_tokens", 1))
    return x[:, 0], x[:, prefix:]
