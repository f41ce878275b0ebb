"""Typed configs: frozen dataclasses saved as JSON. :func:`config_from_dict` builds one from a parsed JSON object,
names unknown keys (a typo in a config file is an error, never silently ignored) and checks every value against
the field's type and the class's stated limits before anything is built from it (a checkpoint ``config.json``
saying ``"width": 131072`` is refused here, not after trying to allocate 200 GB).

Types accepted from JSON: ``int`` fields take integers only (not ``true``, not ``2.5``, not ``"64"``); ``float``
fields take integers or finite floats; ``str`` / ``bool`` fields their own type; ``tuple[float, ...]`` fields a
list of numbers of the right length; ``X | None`` also ``null``. Limits: a config class may declare
``LIMITS: ClassVar[dict[str, tuple[lo, hi]]]`` (inclusive); every other ``int`` field must lie within
``[-2**31, 2**31 - 1]`` (:data:`DEFAULT_INT_LIMIT`).
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any, TypeVar, Union

from .errors import ConfigError

C = TypeVar("C")

#: bounds of an ``int`` config field whose class states no limit of its own (a 32-bit signed integer)
DEFAULT_INT_LIMIT = (-(2**31), 2**31 - 1)


def config_from_dict(cls: type[C], d: dict) -> C:
    """``cls(**d)``, or ConfigError listing the keys of ``d`` that are not fields of ``cls`` (and the known ones),
    or naming a value of the wrong type or outside the class's limits."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    check_values(cls, d)
    return cls(**d)


def check_values(cls: type, d: dict) -> None:
    """Check the values of ``d`` (field name -> value) against the field types and ``cls.LIMITS``."""
    hints = typing.get_type_hints(cls)
    limits = getattr(cls, "LIMITS", {})
    for name, value in d.items():
        where = f"{cls.__name__}: {name}"
        _check_type(where, value, hints.get(name, Any))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = limits.get(name, DEFAULT_INT_LIMIT if isinstance(value, int) else (-math.inf, math.inf))
            if not lo <= value <= hi:
                raise ConfigError(f"{where} is {value!r}, outside the allowed range {lo}..{hi}")


def _check_type(where: str, value: Any, tp: Any) -> None:
    origin = typing.get_origin(tp)
    if tp is Any:
        return
    if origin in (Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _check_type(where, value, arm)
            except ConfigError as e:
                errors.append(e)
        raise errors[-1] if len(errors) == 1 else ConfigError(f"{where} must be {_name(tp)}, got {_shown(value)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be null, got {_shown(value)}")
        return
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is tuple or tp is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list ({_name(tp)}), got {_shown(value)}")
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{where} must have {len(args)} values, got {len(value)}")
        for i, v in enumerate(value):
            _check_type(f"{where}[{i}]", v, args[0] if args and args[-1] is Ellipsis else args[i] if args else Any)
        return
    elif origin in (dict, typing.Mapping) or tp is dict:
        ok = isinstance(value, dict)
    elif origin is list or tp is list:
        ok = isinstance(value, list)
    else:
        ok = isinstance(tp, type) and isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{where} must be {_name(tp)}, got {_shown(value)}")


def _name(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
