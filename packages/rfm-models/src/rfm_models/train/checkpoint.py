"""Checkpoints as directories of safetensors + JSON, committed atomically and validated on load.

Layout under ``<output_dir>/checkpoints/``::

    step-000120/  model.safetensors        weights (no pickle anywhere)
                  optimizer.safetensors    optimizer tensors; param groups and scalars as JSON metadata
                  rank-0.json              per-rank state: loader position, RNG states, last loss
                  selector-rank-0.safetensors  the online selector (rfm_curation.selectors.state format)
                  trainer.json             written last: step, epoch, counters, scheduler, scaler, config,
                                           and the size + SHA-256 of every other file
    latest                                 "step-000120", written after trainer.json

Every file is written atomically (``rfm_data.io``), and a directory counts only once its ``trainer.json``
exists and every file it lists has the recorded size and hash. So a run killed mid-write, a truncated upload
or a flipped byte is detected, a warning names the problem, and the previous checkpoint is used instead.
This works on object stores too, where directories cannot be renamed atomically.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from rfm_data import io

FORMAT = "rfm-checkpoint/1"
TRAINER_FILE = "trainer.json"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_OPT_FORMAT = "rfm-optimizer-state/1"


class CheckpointWarning(UserWarning):
    """A checkpoint was invalid (partial, corrupt) and skipped."""


def step_dir_name(step: int) -> str:
    return f"step-{step:09d}"


def checkpoints_url(output_dir: str) -> str:
    return str(io.join(output_dir, "checkpoints"))


def file_record(data: bytes) -> dict[str, Any]:
    """Size and SHA-256 of ``data``, as recorded in ``trainer.json``."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_file(dir_url: str, name: str, data: bytes) -> dict[str, Any]:
    """Write one checkpoint file atomically and return its record."""
    io.write_bytes(io.join(dir_url, name), data)
    return file_record(data)


# ------------------------------------------------------------------------------------- (de)serialisation
def model_to_bytes(model: torch.nn.Module) -> bytes:
    """The model's ``state_dict`` as safetensors bytes (tensors cloned so tied weights serialise)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return bytes(save_tensors(tensors))


def load_model_bytes(model: torch.nn.Module, data: bytes) -> None:
    """Load :func:`model_to_bytes` output strictly (every key must match)."""
    model.load_state_dict(load_tensors(data), strict=True)


def optimizer_to_bytes(optimizer: torch.optim.Optimizer) -> bytes:
    """Optimizer state: tensors (moments, step counts) into safetensors, everything else JSON metadata."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}/{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    meta = {"param_groups": state["param_groups"], "scalars": scalars}
    return bytes(save_tensors(tensors, metadata={"format": _OPT_FORMAT, "json": json.dumps(meta)}))


def _metadata(data: bytes) -> dict[str, str]:
    (header_len,) = struct.unpack("<Q", data[:8])
    meta: dict[str, str] = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    return meta


def load_optimizer_bytes(optimizer: torch.optim.Optimizer, data: bytes) -> None:
    """Restore :func:`optimizer_to_bytes` output (tensors are moved to the parameters' devices by torch)."""
    meta = _metadata(data)
    if meta.get("format") != _OPT_FORMAT:
        raise ValueError(f"not an optimizer state file (format {meta.get('format')!r})")
    rest = json.loads(meta["json"])
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in load_tensors(data).items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = tensor
    for pid_text, scalars in rest["scalars"].items():
        state.setdefault(int(pid_text), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def rng_state() -> dict[str, Any]:
    """Python, NumPy (global) and torch (CPU + every CUDA device) RNG states as JSON-able values."""
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": json.loads(json.dumps(random.getstate())),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state` output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ---------------------------------------------------------------------------------------------- commit
def commit(output_dir: str, step: int, trainer_state: Mapping[str, Any], files: Mapping[str, Any]) -> str:
    """Write ``trainer.json`` (listing ``files``' records) and then the ``latest`` pointer; returns the dir."""
    root = checkpoints_url(output_dir)
    name = step_dir_name(step)
    doc = {"format": FORMAT, **trainer_state, "files": dict(files)}
    io.write_text(io.join(root, name, TRAINER_FILE), json.dumps(doc, indent=1, allow_nan=False))
    io.write_text(io.join(root, LATEST_FILE), name)
    return str(io.join(root, name))


def _step_dirs(root: str) -> list[tuple[int, str]]:
    """``(step, name)`` of every ``step-*`` directory, newest first."""
    if not io.exists(root):
        return []
    fs, path = io.filesystem(root)
    found = []
    for entry in fs.ls(path, detail=False):
        match = _STEP_DIR.match(str(entry).rstrip("/").rsplit("/", 1)[-1])
        if match:
            found.append((int(match.group(1)), match.group(0)))
    return sorted(found, reverse=True)


@dataclass
class LoadedCheckpoint:
    """A validated checkpoint: its directory, its ``trainer.json`` and the verified bytes of its files."""

    url: str
    state: dict[str, Any]
    files: dict[str, bytes]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def _read(url: str) -> bytes:
    fs, path = io.filesystem(url)
    with fs.open(path, "rb") as f:
        return bytes(f.read())


def validate(dir_url: str) -> LoadedCheckpoint:
    """Read and verify one checkpoint directory; ``ValueError`` saying what is wrong."""
    trainer_url = io.join(dir_url, TRAINER_FILE)
    if not io.exists(trainer_url):
        raise ValueError("no trainer.json (the checkpoint was never committed)")
    try:
        state = json.loads(io.read_text(trainer_url))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"trainer.json is not valid JSON: {err}") from err
    if state.get("format") != FORMAT:
        raise ValueError(f"trainer.json format is {state.get('format')!r}, expected {FORMAT!r}")
    files: dict[str, bytes] = {}
    for name, record in state["files"].items():
        url = io.join(dir_url, name)
        if not io.exists(url):
            raise ValueError(f"{name} is missing")
        data = _read(url)
        if file_record(data) != record:
            raise ValueError(f"{name} is corrupt ({len(data)} bytes, expected {record['size']}; hash differs)")
        files[name] = data
    return LoadedCheckpoint(dir_url, state, files)


def load_latest(output_dir: str) -> LoadedCheckpoint | None:
    """The newest valid checkpoint under ``output_dir`` (warning about each invalid one skipped), or None."""
    root = checkpoints_url(output_dir)
    candidates = [name for _, name in _step_dirs(root)]
    pointer = io.join(root, LATEST_FILE)
    if io.exists(pointer):
        target = io.read_text(pointer).strip()
        if target in candidates:  # the pointer goes first; a stale pointer costs nothing
            candidates.remove(target)
            candidates.insert(0, target)
    for name in candidates:
        try:
            return validate(io.join(root, name))
        except (ValueError, OSError) as err:
            warnings.warn(f"checkpoint {io.join(root, name)} is unusable ({err}); trying the previous one",
                          CheckpointWarning, stacklevel=2)
    return None


def prune(output_dir: str, keep_last: int, newest_step: int) -> None:
    """Delete checkpoint directories older than the ``keep_last`` newest committed ones (up to ``newest_step``)."""
    root = checkpoints_url(output_dir)
    dirs = [(s, n) for s, n in _step_dirs(root) if s <= newest_step]
    committed = [s for s, n in dirs if io.exists(io.join(root, n, TRAINER_FILE))]
    if len(committed) <= keep_last:
        return
    cutoff = committed[keep_last - 1]
    fs, _ = io.filesystem(root)
    for step, name in dirs:
        if step < cutoff:
            fs.rm(io.filesystem(io.join(root, name))[1], recursive=True)
