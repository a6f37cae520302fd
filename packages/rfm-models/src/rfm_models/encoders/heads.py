"""Projection heads: map an encoder's features into the shared embedding space (512-d by default)."""

from __future__ import annotations

from torch import nn

from rfm_data.registry import Registry

projection_heads: Registry[nn.Module] = Registry("projection head")

__all__ = ["create_projection_head", "projection_heads"]


@projection_heads.register("linear")
def _linear(in_dim: int, out_dim: int) -> nn.Module:
    # No bias: embeddings are L2-normalised afterwards, a bias would only shift them off the origin.
    return nn.Linear(in_dim, out_dim, bias=False)


@projection_heads.register("mlp")
def _mlp(in_dim: int, out_dim: int, hidden_dim: int | None = None) -> nn.Module:
    hidden = hidden_dim or in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim, bias=False))


@projection_heads.register("identity")
def _identity(in_dim: int, out_dim: int) -> nn.Module:
    if in_dim != out_dim:
        raise ValueError(f"identity projection needs in_dim == out_dim, got {in_dim} -> {out_dim}")
    return nn.Identity()


def create_projection_head(name: str, in_dim: int, out_dim: int, **options: object) -> nn.Module:
    """A registered head (``linear``, ``mlp``, ``identity``) mapping ``in_dim`` to ``out_dim`` features."""
    return projection_heads.create(name, in_dim=in_dim, out_dim=out_dim, **options)
