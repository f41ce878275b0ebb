"""Typed configs: frozen dataclasses saved as JSON. :func:`config_from_dict` builds one from a parsed JSON object
and names unknown keys (a typo in a config file is an error, never silently ignored)."""
from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

from .errors import ConfigError

C = TypeVar("C")


def config_from_dict(cls: type[C], d: dict) -> C:
    """``cls(**d)``, or ConfigError listing the keys of ``d`` that are not fields of ``cls`` (and the known ones)."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)
