"""Reading and strictly loading safetensors weights; nothing here ever unpickles.

Weights come from local paths or fsspec URLs the user gives: a ``.safetensors`` file or an HF-style directory
holding ``model.safetensors``. Every mismatch names the tensor, because "size mismatch" without a name costs
an afternoon on a 300-tensor model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from safetensors.torch import load as load_safetensors_bytes
from torch import Tensor, nn

from rfm_data import io
from rfm_data.errors import ConfigError

WEIGHTS_NAME = "model.safetensors"

__all__ = ["WEIGHTS_NAME", "check_state", "load_state_strict", "read_safetensors", "resolve_weights"]


def resolve_weights(path: str) -> str:
    """The safetensors file for ``path``: the file itself, or ``model.safetensors`` inside a directory."""
    if path.endswith(".safetensors"):
        if not io.exists(path):
            raise ConfigError(f"weights file {path} does not exist")
        return path
    candidate = io.join(path, WEIGHTS_NAME)
    if io.exists(candidate):
        return candidate
    if path.endswith((".bin", ".pt", ".pth", ".ckpt")):
        raise ConfigError(f"{path}: pickled checkpoints are never loaded (unsafe); convert to safetensors first")
    raise ConfigError(f"no weights at {path}: expected a .safetensors file or a directory with {WEIGHTS_NAME}")


def read_safetensors(path: str) -> dict[str, Tensor]:
    """All tensors of the safetensors file (or directory, see :func:`resolve_weights`) at ``path``."""
    url = resolve_weights(path)
    # Reading bytes through fsspec keeps gs:// and memory:// working; safetensors parses without pickle.
    return load_safetensors_bytes(io.read_bytes(url))


def check_state(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], source: str) -> None:
    """Raise a ConfigError naming the first missing, unexpected or wrongly shaped tensor.

    Args:
        expected: the module's ``state_dict()``.
        given: tensors read from ``source``.
        source: where ``given`` came from (for the message).
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing:
        raise ConfigError(f"{source}: {len(missing)} tensors missing, e.g. {missing[:5]}")
    if unexpected:
        raise ConfigError(f"{source}: {len(unexpected)} unexpected tensors, e.g. {unexpected[:5]}")
    for name, tensor in expected.items():
        if tuple(given[name].shape) != tuple(tensor.shape):
            raise ConfigError(f"{source}: tensor {name!r} has shape {tuple(given[name].shape)}, "
                              f"the model expects {tuple(tensor.shape)}")


def load_state_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Copy ``state`` into ``module`` after :func:`check_state`; dtypes follow the module."""
    check_state(module.state_dict(), state, source)
    with torch.no_grad():
        module.load_state_dict(dict(state), strict=True)
