"""One generic name → factory registry, used for every pluggable kind in rfm.

It lives at the base of the dependency graph so that every rfm package shares the same behaviour:
duplicate names raise, unknown names list the known ones, ``names(pattern)`` filters with globs.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → factory. Duplicate names raise; unknown names list the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``."""

        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return add

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; ``KeyError`` naming the known ones otherwise."""
        if name not in self._factories:
            known = ", ".join(sorted(self._factories)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._factories[name]

    def create(self, name: str, **overrides: Any) -> T:
        """Build the ``name`` entry with keyword ``overrides``."""
        return self.get(name)(**overrides)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the glob ``pattern``, sorted."""
        return sorted(n for n in self._factories if fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._factories
