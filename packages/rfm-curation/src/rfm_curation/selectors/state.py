"""Selector checkpoints as one self-describing safetensors file, written atomically.

Numeric numpy arrays of the state (prototypes, warm-up buffer, …) are the file's tensors; everything else
(counters, phase, RNG state, kept ids, configuration) is JSON in the safetensors header's metadata. One file
means one atomic write: a checkpoint is complete or absent, never half old, half new.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from rfm_curation.selectors.base import Selector, create_selector
from rfm_data import io

FORMAT = "rfm-selector-state/1"
_JSON_KEY = "rfm_state"


def state_to_bytes(state: Mapping[str, Any]) -> bytes:
    """Serialise a selector :meth:`~Selector.state_dict`; ``ValueError`` naming a key that cannot be stored."""
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    rest: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ValueError(f"state[{key!r}] is a {value.dtype} array; only numeric arrays can be stored")
            tensors[key] = np.ascontiguousarray(value)
        else:
            rest[key] = value
    try:
        text = json.dumps(rest, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"state holds a value that is neither a numeric array nor plain JSON: {err}") from err
    return bytes(save_tensors(tensors, metadata={"format": FORMAT, _JSON_KEY: text}))


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """The state dict stored by :func:`state_to_bytes`."""
    # safetensors layout: 8-byte little-endian header length, then the JSON header (with __metadata__).
    if len(data) < 8:
        raise ValueError("not a selector state file: too short")
    (header_len,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    if metadata.get("format") != FORMAT:
        raise ValueError(f"not a selector state file (format {metadata.get('format')!r}, expected {FORMAT!r})")
    state: dict[str, Any] = json.loads(metadata[_JSON_KEY])
    state.update(load_tensors(data))
    return state


def save_state(selector: Selector, url: str) -> None:
    """Write ``selector.state_dict()`` to ``url`` (any fsspec URL) atomically."""
    io.write_bytes(url, state_to_bytes(selector.state_dict()))


def _read(url: str) -> bytes:
    fs, path = io.filesystem(url)
    with fs.open(path, "rb") as f:
        return bytes(f.read())


def load_state(selector: Selector, url: str) -> None:
    """Restore the state saved at ``url`` into ``selector`` (built with the same configuration)."""
    selector.load_state_dict(state_from_bytes(_read(url)))


def restore_selector(url: str) -> Selector:
    """Build the selector a state file belongs to, from the kind and configuration saved in it, and restore it."""
    state = state_from_bytes(_read(url))
    selector = create_selector(str(state["kind"]), **state["config"])
    selector.load_state_dict(state)
    return selector
