"""MONAI networks behind the 3D encoders of :mod:`rfm_models.encoders.image3d` (imported only when one is built).

Kept apart so that importing rfm_models (and registering the 3D encoder names) never needs MONAI, which is
the optional extra ``rfm-models[3d]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from monai.networks.nets.vit import ViT
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rfm_data.errors import ConfigError

__all__ = ["VolumeResNet", "VolumeViT"]


def _run(module: nn.Module, x: Tensor, recompute: bool) -> Tensor:
    """``module(x)``, recomputing activations in backward when ``recompute`` (trades compute for memory)."""
    if recompute:
        out: Tensor = checkpoint(module, x, use_reentrant=False)
        return out
    result: Tensor = module(x)
    return result


class VolumeResNet(ResNet):
    """MONAI's 3D ResNet with one input channel and no classifier: ``(B, 1, D, H, W)`` → ``(B, C)``.

    Keeps MONAI's parameter names, so converted MONAI / Med3D checkpoints load without renaming.

    Args:
        block: ``"basic"`` (ResNet-10/18/34) or ``"bottleneck"`` (ResNet-50+).
        layers: blocks per stage (four stages).
        block_inplanes: channels per stage.
    """

    def __init__(self, block: str, layers: Sequence[int], block_inplanes: Sequence[int]) -> None:
        block_type = ResNetBlock if block == "basic" else ResNetBottleneck
        super().__init__(block_type, list(layers), list(block_inplanes), spatial_dims=3, n_input_channels=1,
                         feed_forward=False)
        self.num_features: int = int(self.in_planes)  # channels after the last stage
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward."""
        self.grad_checkpointing = enable

    def forward(self, x: Tensor) -> Tensor:
        """Globally average-pooled features of the last stage."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        recompute = self.grad_checkpointing and self.training
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = _run(stage, x, recompute)
        out: Tensor = self.avgpool(x).flatten(1)
        return out


class VolumeViT(ViT):
    """MONAI's 3D ViT without classification head; features are the mean of the patch tokens.

    MONAI's ``classification=False`` has no CLS token, so mean pooling is the pooled output.

    Args:
        image_size: cube edge the position embeddings are learned for (a multiple of ``patch_size``).
        patch_size: cube edge of one patch.
        hidden_size, mlp_dim, num_layers, num_heads: transformer width / depth.
    """

    def __init__(self, image_size: int, patch_size: int, hidden_size: int, mlp_dim: int, num_layers: int,
                 num_heads: int) -> None:
        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} must be a multiple of the 3D ViT patch_size {patch_size}: "
                              f"use e.g. image_size={max(1, image_size // patch_size) * patch_size}")
        super().__init__(in_channels=1, img_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                         mlp_dim=mlp_dim, num_layers=num_layers, num_heads=num_heads, classification=False,
                         spatial_dims=3, qkv_bias=True)
        self.num_features = hidden_size
        self.image_size = image_size
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block's activations in backward."""
        self.grad_checkpointing = enable

    def forward(self, x: Tensor) -> Tensor:  # MONAI's returns (x, hidden states): pooled features here
        """Mean-pooled, layer-normed patch tokens ``(B, hidden_size)``."""
        if tuple(x.shape[2:]) != (self.image_size,) * 3:
            raise ValueError(f"3D ViT expects {self.image_size}³ volumes (its position embeddings are learned "
                             f"for that size), got spatial size {tuple(x.shape[2:])}: crop or pad volumes to "
                             f"{self.image_size} (rfm_data.volume_transforms) or build it with that image_size")
        x = self.patch_embedding(x)
        recompute = self.grad_checkpointing and self.training
        for block in self.blocks:
            x = _run(block, x, recompute)
        out: Tensor = self.norm(x).mean(dim=1)
        return out
