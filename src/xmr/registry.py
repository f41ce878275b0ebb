"""A tiny name -> factory registry, one instance per kind of component.

Usage::

    ENCODERS = Registry("encoder")

    @ENCODERS.register("tiny", help="small random dual encoder for tests")
    def _make_tiny(arg, **kw): ...

    ENCODERS.get("tiny")(...)
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    help: str = ""


class Registry(Generic[T]):
    """Maps names to objects (usually factories). Duplicate names warn and replace."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "") -> None:
        if name in self._entries:
            warnings.warn(f"{self.kind} {name!r} registered twice; the later one wins", stacklevel=3)
        self._entries[name] = Entry(name, obj, help)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}. Available: {', '.join(sorted(self._entries)) or '(none)'}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)
