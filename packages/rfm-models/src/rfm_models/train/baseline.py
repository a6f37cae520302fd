"""``TinyCLIP``: the smallest real image-report model, for smoke runs of the trainer, its tests and the
``tiny_clip_cxr`` preset. A 4-block CNN over the image, a hashed bag-of-words over the report, both projected
to a shared space, trained with symmetric InfoNCE and a learned temperature (the CLIP objective).

It follows the trainer's model contract (``model(batch, keep=mask) -> {"loss", "per_sample_loss",
"image_emb", "text_emb"}``). It is not meant to be a good radiology model; rfm_models' real encoders are.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import nn
from torch.utils.checkpoint import checkpoint

_WORD = re.compile(r"[a-z0-9]+")


def hash_tokens(texts: list[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Words of each text hashed to ``buckets`` ids (CRC32: stable across processes, unlike ``hash``);
    returns ``(flat ids, offsets)`` for ``nn.EmbeddingBag``. An empty text maps to bucket 0."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        words = _WORD.findall(text.lower()) or [""]
        ids.extend(zlib.crc32(w.encode()) % buckets for w in words)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.norm = nn.GroupNorm(min(8, cout), cout)  # GroupNorm: no batch statistics, so keep-masks are safe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x)))


class TinyCLIP(nn.Module):
    """CNN image encoder + bag-of-words text encoder with a CLIP loss.

    Args:
        embed_dim: size of the shared embedding space.
        width: channels of the first conv block (doubled per block).
        vocab_buckets: hashed vocabulary size of the text encoder.
        in_channels: image channels (1 for CXRs).
        text_key: batch key holding the report strings.
    """

    def __init__(self, embed_dim: int = 64, width: int = 16, vocab_buckets: int = 4096, in_channels: int = 1,
                 text_key: str = "report") -> None:
        super().__init__()
        chans = [in_channels, width, width * 2, width * 4, width * 8]
        self.blocks = nn.ModuleList(_ConvBlock(a, b) for a, b in itertools.pairwise(chans))
        self.image_proj = nn.Linear(chans[-1], embed_dim)
        self.text_embed = nn.EmbeddingBag(vocab_buckets, embed_dim * 2, mode="mean")
        self.text_proj = nn.Linear(embed_dim * 2, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.vocab_buckets, self.text_key = vocab_buckets, text_key
        self.gradient_checkpointing = False

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute conv activations in the backward instead of storing them."""
        self.gradient_checkpointing = enabled

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return F.normalize(self.image_proj(x.mean(dim=(2, 3))), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        ids, offsets = hash_tokens(texts, self.vocab_buckets)
        device = self.text_proj.weight.device
        bag = self.text_embed(ids.to(device), offsets.to(device))
        return F.normalize(self.text_proj(bag), dim=-1)

    def forward(self, batch: dict[str, Any], keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        image, texts = batch["image"], list(batch[self.text_key])
        if keep is not None:
            image = image[keep]
            texts = [t for t, k in zip(texts, keep.tolist(), strict=True) if k]
        img, txt = self.encode_image(image), self.encode_text(texts)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * img.float() @ txt.float().T
        target = torch.arange(len(texts), device=logits.device)
        per_sample = 0.5 * (F.cross_entropy(logits, target, reduction="none")
                            + F.cross_entropy(logits.T, target, reduction="none"))
        # With no kept row the loss is an exact zero still connected to every parameter, so DDP ranks that
        # kept nothing join the gradient all-reduce like the others.
        loss = per_sample.mean() if len(texts) else torch.stack([p.sum() for p in self.parameters()]).sum() * 0.0
        return {"loss": loss, "per_sample_loss": per_sample.detach(), "image_emb": img, "text_emb": txt}
