"""Helpers for optional dependencies: import lazily, fail with the install hint."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'xmr[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = package or module
        raise MissingExtraError(
            f"{pkg} is needed for this feature but is not installed ({e}). "
            f"Install it with: pip install 'xmr[{extra}]'"
        ) from e
