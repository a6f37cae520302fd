"""The DINO projection head: an MLP to a bottleneck, L2 normalisation, and a weight-normalised prototype layer.

The last layer's weight is normalised per prototype with its gain fixed to 1 (DINO's ``norm_last_layer``):
the logits are then cosine similarities, which keeps the softmax temperatures meaningful and training stable.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from rfm_data.errors import ConfigError

__all__ = ["DINOHead", "HeadConfig", "WeightNormLinear"]


@dataclass
class HeadConfig:
    """Shape of a DINO / iBOT head.

    Attributes:
        out_dim: number of prototypes (DINOv2 uses 65,536 on LVD-142M; a few thousand suit 10^4-10^5 CXRs).
        hidden_dim: width of the MLP's hidden layers.
        bottleneck_dim: dimension of the L2-normalised bottleneck before the prototypes.
        n_layers: MLP depth (>= 1; 1 = a single linear map to the bottleneck).
    """

    out_dim: int = 4096
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    n_layers: int = 3

    def validate(self, prefix: str = "head") -> None:
        """ConfigError naming the first non-positive size."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value < 1:
                raise ConfigError(f"{prefix}.{f.name} must be >= 1, got {value}")


class WeightNormLinear(nn.Module):
    """Bias-free linear layer whose rows (prototypes) are L2-normalised on every call."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Cosine logits ``(..., out_dim)`` of ``x`` against the prototypes (``x`` is already unit-norm)."""
        return nnf.linear(x, nnf.normalize(self.weight, dim=1))


class DINOHead(nn.Module):
    """``in_dim`` features → MLP → unit bottleneck → ``out_dim`` prototype logits."""

    def __init__(self, in_dim: int, config: HeadConfig) -> None:
        super().__init__()
        config.validate()
        layers: list[nn.Module] = []
        dims = [in_dim] + [config.hidden_dim] * (config.n_layers - 1) + [config.bottleneck_dim]
        for k, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if k < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = WeightNormLinear(config.bottleneck_dim, config.out_dim)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Prototype logits ``(..., out_dim)`` of features ``(..., in_dim)``."""
        out: Tensor = self.last_layer(nnf.normalize(self.mlp(x), dim=-1, eps=1e-6))
        return out
