"""The :class:`Selector` protocol shared by every online selector, its registry, and the common bookkeeping.

An online selector sees each training batch (sample ids, embeddings, per-sample losses) and returns a boolean
keep mask; the trainer computes the loss only on the kept rows. Selectors remember the union of kept ids,
which becomes the fixed training subset once the schedule says so (:attr:`Phase.FIXED`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rfm_data.errors import ConfigError
from rfm_data.registry import Registry

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
Id = int | str

STATE_FORMAT_VERSION = 1


class Phase(str, Enum):
    """Where a selector is in its schedule."""

    WARMUP = "warmup"  # keep everything (and, for prototypes, collect embeddings to initialise them)
    SELECTING = "selecting"  # select per batch; kept ids accumulate into the subset
    FIXED = "fixed"  # the subset is frozen: a sample is kept iff its id is in the subset


@runtime_checkable
class Selector(Protocol):
    """What the trainer needs from an online selector."""

    @property
    def phase(self) -> Phase:
        """The current phase of the schedule."""
        ...

    @property
    def kept_ids(self) -> list[Id]:
        """Every id kept so far, in the order first kept."""
        ...

    def select(self, ids: Any, embeddings: Any = None, losses: Any = None) -> BoolArray:
        """The ``(len(ids),)`` keep mask for one batch; advances the selector's state."""
        ...

    def end_epoch(self) -> None:
        """Tell the selector an epoch is over (the schedule may fix the subset)."""
        ...

    def subset(self) -> npt.NDArray[Any]:
        """The union of kept ids, sorted: the training subset once :attr:`phase` is ``FIXED``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: plain types and numeric numpy arrays only."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` into a selector built with the same configuration."""
        ...


selectors: Registry[Selector] = Registry("selector")
register_selector = selectors.register


def create_selector(name: str, **overrides: Any) -> Selector:
    """Build the selector registered as ``name`` (``"prototype"``, ``"learnability"``, …) with ``overrides``."""
    selector: Selector = selectors.create(name, **overrides)
    return selector


def list_selectors(pattern: str = "*") -> list[str]:
    """Names of the registered selectors matching the glob ``pattern``, sorted."""
    names: list[str] = selectors.names(pattern)
    return names


def check_ids(ids: Any, n: int | None = None) -> list[Id]:
    """``ids`` as a list of Python ints or strings; ``ValueError`` naming ``ids`` if unusable or of wrong length."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.dtype.kind not in "iuUO":
        raise ValueError(f"ids must be a 1-D sequence of integers or strings, got shape {arr.shape} dtype {arr.dtype}")
    out: list[Id] = arr.tolist()
    if any(not isinstance(i, int | str) or isinstance(i, bool) for i in out):
        raise ValueError("ids must hold only integers or strings")
    if n is not None and len(out) != n:
        raise ValueError(f"len(ids)={len(out)} does not match len(embeddings)={n}")
    return out


def check_vector(name: str, values: Any, n: int) -> FloatArray:
    """``values`` as a finite float64 ``(n,)`` array; ``ValueError`` naming ``name`` otherwise."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per id), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_count(name: str, value: Any, minimum: int = 0, optional: bool = False) -> int | None:
    """A config integer ≥ ``minimum`` (or ``None`` when ``optional``); ``ConfigError`` naming ``name``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


class TrackedSelector:
    """Bookkeeping shared by the selectors: phase, samples seen, epochs, and the ordered set of kept ids."""

    kind = ""  # the registry name, written into the state so a checkpoint says what it belongs to

    def __init__(self, epoch_size: int | None = None) -> None:
        self.epoch_size = check_count("epoch_size", epoch_size, minimum=1, optional=True)
        self._phase = Phase.SELECTING
        self._seen = 0
        self._epoch = 0
        self._kept: dict[Id, None] = {}  # a dict is an insertion-ordered set

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def kept_ids(self) -> list[Id]:
        return list(self._kept)

    @property
    def samples_seen(self) -> int:
        """Samples passed to :meth:`select` so far (all phases)."""
        return self._seen

    def subset(self) -> npt.NDArray[Any]:
        return np.sort(np.asarray(list(self._kept)))

    def _in_subset(self, ids: list[Id]) -> BoolArray:
        return np.fromiter((i in self._kept for i in ids), dtype=bool, count=len(ids))

    def _record(self, ids: list[Id], keep: BoolArray) -> BoolArray:
        """Remember the kept ids and count the batch."""
        self._kept.update(dict.fromkeys(i for i, k in zip(ids, keep.tolist(), strict=True) if k))
        self._seen += len(ids)
        return keep

    def _base_state(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format_version": STATE_FORMAT_VERSION,
            "config": dict(config),
            "phase": self._phase.value,
            "seen": self._seen,
            "epoch": self._epoch,
            "kept_ids": list(self._kept),
        }

    def _load_base_state(self, state: Mapping[str, Any], config: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"state.kind is {state.get('kind')!r}, this selector is {self.kind!r}")
        if state.get("format_version") != STATE_FORMAT_VERSION:
            raise ValueError(f"state.format_version {state.get('format_version')!r} is not {STATE_FORMAT_VERSION}")
        saved = dict(state["config"])
        differing = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        if differing:
            raise ConfigError(f"state.config differs from this selector's configuration in: {', '.join(differing)}")
        self._phase = Phase(state["phase"])
        self._seen = int(state["seen"])
        self._epoch = int(state["epoch"])
        self._kept = dict.fromkeys(state["kept_ids"])
