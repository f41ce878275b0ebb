"""User-level locations: ``XMR_HOME`` (default ``~/.xmr``) holds the default index; the cache is separate."""
from __future__ import annotations

import os
from pathlib import Path


def xmr_home() -> Path:
    return Path(os.environ.get("XMR_HOME") or Path.home() / ".xmr").expanduser()


def default_index_path() -> Path:
    """``$XMR_INDEX`` if set, else ``$XMR_HOME/index``."""
    env = os.environ.get("XMR_INDEX")
    return Path(env).expanduser() if env else xmr_home() / "index"


def cache_dir(*parts: str) -> Path:
    """``$XMR_CACHE`` if set, else ``~/.cache/xmr`` (derived data such as concept class embeddings)."""
    base = os.environ.get("XMR_CACHE") or Path.home() / ".cache" / "xmr"
    return Path(base).expanduser().joinpath(*parts)
