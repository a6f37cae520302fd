"""Image encoders: timm backbones with a 1-channel stem, any input resolution, scratch or local weights.

Every entry of the ``image_encoders`` registry takes ``weights`` (a local ``.safetensors`` file or an
HF-style directory with ``model.safetensors``; ``None`` = from scratch) and ``image_size`` (the training
resolution; ViTs interpolate position embeddings for other sizes) plus timm keyword overrides. Nothing is
ever downloaded: timm is always called with ``pretrained=False``.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor, nn

from rfm_data.registry import Registry
from rfm_models.weights import load_state_strict, read_safetensors

__all__ = ["ImageEncoder", "create_image_encoder", "image_encoders"]


class ImageEncoder(nn.Module):
    """A timm backbone returning pooled features ``(B, out_dim)`` from ``(B, 1, H, W)`` images.

    Args:
        model: a timm model built with ``in_chans=1, num_classes=0``.
    """

    spatial_dims: int = 2  # 2: (B, 1, H, W) images; 3D encoders (image3d.VolumeEncoder) take (B, 1, D, H, W)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.out_dim: int = int(getattr(model, "num_features"))  # noqa: B009 (timm attribute, untyped)

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features of ``images`` ``(B, 1, H, W)``."""
        if images.ndim != 4 or images.shape[1] != 1:
            hint = (" (a 5-D input is a batch of 3D volumes: use a 3D encoder such as resnet18_3d or vit_small_3d)"
                    if images.ndim == 5 else "")
            raise ValueError(f"2D image encoder expects (B, 1, H, W) images, got shape {tuple(images.shape)}{hint}")
        out: Tensor = self.model(images)
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in backward (less memory, ~30 % more compute)."""
        self.model.set_grad_checkpointing(enable)  # type: ignore[operator]


def _adapt_input_channels(state: dict[str, Tensor], expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Turn RGB stem weights into 1-channel ones by summing over colour (a grey image is R = G = B)."""
    out = dict(state)
    for name, target in expected.items():
        given = out.get(name)
        if (given is not None and given.ndim == 4 and target.ndim == 4 and given.shape[1] == 3
                and target.shape[1] == 1 and given.shape[0] == target.shape[0]
                and given.shape[2:] == target.shape[2:]):
            out[name] = given.sum(dim=1, keepdim=True)
    return out


def _strip_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items()} if prefix else state


def _build(timm_name: str, weights: str | None, image_size: int, weights_prefix: str = "",
           **timm_kwargs: Any) -> ImageEncoder:
    """Create ``timm_name`` with one input channel, then load ``weights`` strictly (shapes named)."""
    kwargs = {"pretrained": False, "num_classes": 0, "in_chans": 1, **timm_kwargs}
    if "vit" in timm_name:
        # dynamic_img_size lets one ViT run at any resolution (position embeddings interpolated per call).
        kwargs.setdefault("img_size", image_size)
        kwargs.setdefault("dynamic_img_size", True)
    encoder = ImageEncoder(timm.create_model(timm_name, **kwargs))
    if weights is not None:
        state = _strip_prefix(read_safetensors(weights), weights_prefix)
        expected = encoder.model.state_dict()
        # Classifier heads of the source checkpoint are irrelevant to a feature extractor.
        state = {k: v for k, v in _adapt_input_channels(state, expected).items()
                 if k in expected or not k.startswith(("head.", "fc.", "classifier."))}
        load_state_strict(encoder.model, state, f"image weights {weights}")
    return encoder


image_encoders: Registry[ImageEncoder] = Registry("image encoder")


def _register(name: str, timm_name: str, **defaults: Any) -> None:
    def factory(weights: str | None = None, image_size: int = 224, **overrides: Any) -> ImageEncoder:
        return _build(timm_name, weights, image_size, **{**defaults, **overrides})

    factory.__doc__ = f"timm {timm_name} ({defaults or 'default size'}), 1-channel input."
    image_encoders.register(name)(factory)


_register("vit_small", "vit_small_patch16_224")
_register("vit_base", "vit_base_patch16_224")
_register("convnext_tiny", "convnext_tiny")
_register("convnext_small", "convnext_small")
_register("resnet50", "resnet50")
_register("resnet18", "resnet18")
# Tiny variants for tests: same code paths, milliseconds per step on a CPU.
_register("test_vit", "vit_tiny_patch16_224", embed_dim=32, depth=2, num_heads=2)
_register("test_convnext", "convnext_atto", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
_register("test_resnet", "resnet18", layers=(1, 1, 1, 1))


def create_image_encoder(name: str, **overrides: Any) -> ImageEncoder:
    """A registered image encoder (``image_encoders.names()``) with keyword ``overrides``.

    Example:
        >>> enc = create_image_encoder("test_vit", image_size=64)
        >>> enc(torch.zeros(2, 1, 64, 64)).shape
        torch.Size([2, 32])
    """
    return image_encoders.create(name, **overrides)
