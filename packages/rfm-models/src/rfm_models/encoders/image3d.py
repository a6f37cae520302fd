"""3D image encoders for CT / MR volumes: MONAI 3D ResNets (as in GreenRFM) and a MONAI 3D ViT.

They are registered in the same ``image_encoders`` registry as the 2D timm backbones, with a ``_3d`` suffix
(``resnet18_3d``, ``vit_3d``, ...). One registry on purpose: ``ModelConfig.image_encoder``, ``build_model``,
``save_pretrained`` / ``load_pretrained`` and ``load_image_encoder`` all resolve encoders by name through it,
so a 3D vision-language model trains, checkpoints and exports with no 3D-specific code path. Each encoder says
what it takes in ``spatial_dims`` (2 or 3); a 4-D image batch given to a 3D encoder (or a 5-D volume batch
to a 2D one) raises a ValueError saying what was expected.

Inputs are ``(B, 1, D, H, W)`` float volumes (see ``rfm_data.volume_transforms``); outputs pooled features
``(B, out_dim)``. ``image_size`` is the edge of the training cube: the ResNets accept any size (global
average pooling), the ViT has learned position embeddings for exactly ``image_size``³ and refuses others.
Nothing is downloaded (MONAI's ``pretrained=`` is never used); ``weights`` is a local ``.safetensors`` file
or directory, loaded strictly with every missing / unexpected / wrongly shaped tensor named.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from torch import Tensor

from rfm_data.errors import ConfigError
from rfm_models.encoders.image import ImageEncoder, image_encoders
from rfm_models.weights import load_state_strict, read_safetensors

__all__ = ["VolumeEncoder"]

# Keys of a source checkpoint's classifier, irrelevant to a feature extractor (MONAI names).
_HEAD_PREFIXES = ("fc.", "classification_head.")


def _nets() -> ModuleType:
    """The MONAI-backed networks, imported on first use: MONAI is the optional extra ``rfm-models[3d]``."""
    try:
        return importlib.import_module("rfm_models.encoders.volume_nets")
    except ImportError as err:
        raise ConfigError(f'3D image encoders need MONAI ({err}): pip install "rfm-models[3d]"') from None


class VolumeEncoder(ImageEncoder):
    """A 3D backbone returning pooled features ``(B, out_dim)`` from ``(B, 1, D, H, W)`` volumes.

    Args:
        model: a ``volume_nets.VolumeResNet`` or ``VolumeViT`` (anything with ``num_features``).
    """

    spatial_dims = 3

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features of ``images`` ``(B, 1, D, H, W)``."""
        if images.ndim != 5 or images.shape[1] != 1:
            hint = (" (a 4-D input is a batch of 2D images: use a 2D encoder such as vit_small or resnet50, or "
                    "add the depth axis)" if images.ndim == 4 else "")
            raise ValueError(f"3D image encoder expects (B, 1, D, H, W) volumes, got shape {tuple(images.shape)}"
                             + hint)
        out: Tensor = self.model(images)
        return out


def _load_weights(encoder: VolumeEncoder, weights: str, weights_prefix: str) -> None:
    """Strictly load local safetensors into ``encoder.model`` (a source classifier head is dropped)."""
    state = {k.removeprefix(weights_prefix): v for k, v in read_safetensors(weights).items()}
    expected = encoder.model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(_HEAD_PREFIXES)}
    load_state_strict(encoder.model, state, f"3D image weights {weights}")


def _register_resnet(name: str, block: str, layers: Sequence[int],
                     block_inplanes: Sequence[int] = (64, 128, 256, 512)) -> None:
    def factory(weights: str | None = None, image_size: int = 96, weights_prefix: str = "") -> ImageEncoder:
        del image_size  # global pooling: any volume size works; kept for the common encoder signature
        encoder = VolumeEncoder(_nets().VolumeResNet(block, layers, block_inplanes))
        if weights is not None:
            _load_weights(encoder, weights, weights_prefix)
        return encoder

    factory.__doc__ = f"MONAI 3D ResNet ({block}, layers {tuple(layers)}), 1-channel input, no classifier."
    image_encoders.register(name)(factory)


def _register_vit(name: str, **arch: int) -> None:
    def factory(weights: str | None = None, image_size: int = 96, weights_prefix: str = "",
                **overrides: Any) -> ImageEncoder:
        encoder = VolumeEncoder(_nets().VolumeViT(image_size=image_size, **{**arch, **overrides}))
        if weights is not None:
            _load_weights(encoder, weights, weights_prefix)
        return encoder

    factory.__doc__ = f"MONAI 3D ViT ({arch}), mean-pooled tokens; image_size is the cube edge."
    image_encoders.register(name)(factory)


_register_resnet("resnet10_3d", "basic", (1, 1, 1, 1))
_register_resnet("resnet18_3d", "basic", (2, 2, 2, 2))
_register_resnet("resnet34_3d", "basic", (3, 4, 6, 3))
_register_resnet("resnet50_3d", "bottleneck", (3, 4, 6, 3))
_register_vit("vit_small_3d", patch_size=16, hidden_size=384, mlp_dim=1536, num_layers=12, num_heads=6)
_register_vit("vit_base_3d", patch_size=16, hidden_size=768, mlp_dim=3072, num_layers=12, num_heads=12)
# Tiny variants for tests: the same code paths, well under a second per step on a CPU at 32³.
_register_resnet("test_resnet3d", "basic", (1, 1, 1, 1), (8, 16, 32, 64))
_register_vit("test_vit3d", patch_size=8, hidden_size=32, mlp_dim=64, num_layers=2, num_heads=2)
