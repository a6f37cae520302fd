"""Encoder + UNet-style decoder over multi-level features, built from MONAI blocks.

CNN encoders (ResNet, ConvNeXt) give a feature pyramid directly (timm ``forward_intermediates``). A ViT
gives token maps of one stride (the patch size) at every block: as in UNETR, maps of evenly spaced blocks
are brought to strides ``patch, patch/2, patch/4, ...`` with MONAI ``UnetrPrUpBlock`` (transposed
convolutions), deepest block at the coarsest stride. The decoder then climbs the pyramid with
``UnetrUpBlock`` (upsample, concatenate the skip, convolve) and a 1x1 ``UnetOutBlock`` gives logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from monai.networks.blocks.convolutions import Convolution
from monai.networks.blocks.dynunet_block import UnetOutBlock
from monai.networks.blocks.unetr_block import UnetrPrUpBlock, UnetrUpBlock
from torch import Tensor, nn
from torch.nn import functional

from rfm_models.encoders.image import ImageEncoder

__all__ = ["FeatureLevel", "SegmentationModel", "encoder_levels"]

_NORM = "instance"


@dataclass(frozen=True)
class FeatureLevel:
    """One encoder output: its channels, its stride w.r.t. the input, and which timm index it is."""

    index: int
    channels: int
    stride: int


def _is_vit(encoder: ImageEncoder) -> bool:
    return hasattr(encoder.model, "blocks") and hasattr(encoder.model, "patch_embed")


def encoder_levels(encoder: ImageEncoder, max_levels: int = 4) -> list[FeatureLevel]:
    """The feature levels the decoder uses, shallow to deep.

    CNNs: the last ``max_levels`` stages of timm's ``feature_info``. ViTs: ``max_levels`` evenly spaced
    blocks (the last one always included), all at the patch stride before the UNETR up-projection.
    """
    info: list[dict[str, Any]] = list(getattr(encoder.model, "feature_info"))  # noqa: B009 (timm, untyped)
    if _is_vit(encoder):
        depth = len(getattr(encoder.model, "blocks"))  # noqa: B009
        count = min(max_levels, depth)
        picks = sorted({round((depth - 1) * (k + 1) / count) for k in range(count)})
        return [FeatureLevel(i, int(info[i]["num_chs"]), int(info[i]["reduction"])) for i in picks]
    picks = list(range(len(info)))[-max_levels:]
    return [FeatureLevel(i, int(info[i]["num_chs"]), int(info[i]["reduction"])) for i in picks]


class _VitPyramid(nn.Module):
    """UNETR-style projection of same-stride ViT maps to a pyramid (shallow block → finest stride)."""

    def __init__(self, levels: list[FeatureLevel], width: int) -> None:
        super().__init__()
        ups: list[nn.Module] = []
        for k, level in enumerate(levels):
            n_up = len(levels) - 1 - k  # deepest block stays at the patch stride
            if n_up == 0:
                ups.append(Convolution(2, level.channels, width, kernel_size=1, norm=_NORM))
            else:
                ups.append(UnetrPrUpBlock(2, level.channels, width, num_layer=n_up - 1, kernel_size=3,
                                          stride=1, upsample_kernel_size=2, norm_name=_NORM))
        self.ups = nn.ModuleList(ups)

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        return [up(m) for up, m in zip(self.ups, maps, strict=True)]


class SegmentationModel(nn.Module):
    """An rfm image encoder with a UNet-style decoder; ``forward`` gives logits ``(B, classes, H, W)``.

    Args:
        encoder: an rfm :class:`ImageEncoder` (timm model inside).
        num_classes: mask channels (one sigmoid per class: classes may overlap, as lines and tubes do).
        width: decoder channels at every level.
        freeze_encoder: keep the encoder weights fixed (and in eval mode: frozen BatchNorm statistics).
        max_levels: how many encoder levels feed the decoder.
    """

    def __init__(self, encoder: ImageEncoder, num_classes: int = 1, width: int = 32,
                 freeze_encoder: bool = True, max_levels: int = 4) -> None:
        super().__init__()
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        self.levels = encoder_levels(encoder, max_levels)
        self.vit = _is_vit(encoder)
        self.pyramid = _VitPyramid(self.levels, width) if self.vit else None
        self.project = nn.ModuleList(
            [] if self.vit else [Convolution(2, lv.channels, width, kernel_size=1, norm=_NORM) for lv in self.levels])
        self.strides = self._pyramid_strides()
        self.ups = nn.ModuleList(
            UnetrUpBlock(2, width, width, kernel_size=3, upsample_kernel_size=deep // shallow, norm_name=_NORM)
            for shallow, deep in zip(self.strides[:-1], self.strides[1:], strict=True))
        self.head = UnetOutBlock(2, width, num_classes)
        encoder.requires_grad_(not freeze_encoder)

    def _pyramid_strides(self) -> list[int]:
        if not self.vit:
            return [lv.stride for lv in self.levels]
        patch = self.levels[-1].stride
        n = len(self.levels)
        return [patch // 2 ** (n - 1 - k) for k in range(n)]

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def encode(self, images: Tensor) -> list[Tensor]:
        """Raw encoder maps of the chosen levels (no gradient when the encoder is frozen): what a frozen
        run may compute once and cache, since the decoder never changes them."""
        coarsest = max(self.strides[-1], self.levels[-1].stride)
        if images.shape[-1] % coarsest or images.shape[-2] % coarsest:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be divisible by {coarsest} "
                             "for this encoder: pick image_size as a multiple of it")
        indices = [lv.index for lv in self.levels]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            intermediates = getattr(self.encoder.model, "forward_intermediates")  # noqa: B009 (timm, untyped)
            maps: list[Tensor] = list(intermediates(images, indices=indices, intermediates_only=True))
        return maps

    def decode(self, maps: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Logits ``(B, num_classes, *size)`` from :meth:`encode`'s maps."""
        if self.pyramid is not None:
            feats: list[Tensor] = self.pyramid(maps)
        else:
            feats = [proj(m) for proj, m in zip(self.project, maps, strict=True)]
        x = feats[-1]
        for up, skip in zip(reversed(self.ups), reversed(feats[:-1]), strict=True):
            x = up(x, skip)
        logits: Tensor = self.head(x)
        if self.strides[0] > 1:
            logits = functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` for ``images`` ``(B, 1, H, W)``; H and W divisible by the
        coarsest stride (32 for ResNet/ConvNeXt, the patch size for ViTs)."""
        return self.decode(self.encode(images), (int(images.shape[-2]), int(images.shape[-1])))
