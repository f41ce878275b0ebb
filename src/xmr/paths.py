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


_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def display_path(path: str) -> str:
    """A path as printed on one terminal line: control characters escaped (``\\n``, ``\\x1b``),
    bytes that are not UTF-8 (Python's surrogate escapes of ``os.fsdecode``) shown as ``\\xff``. Other text is
    left as it is, so ordinary paths print unchanged."""
    if path.isprintable():
        return path
    out = []
    for ch in path:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # surrogateescape: the raw byte o - 0xDC00
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o in _CONTROL:
            out.append(_CONTROL[o])
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    return "".join(out)


#: bundled QB-Norm querybanks: ``NAME.txt`` (one caption a line) plus, where shipped, ``NAME.minilm.npy`` / ``.json``
QUERYBANK_DIR = Path(__file__).resolve().parent / "assets" / "querybanks"


def bundled_querybank(source: str) -> tuple[str, Path] | None:
    """``(name, file)`` when ``source`` names a bundled querybank: its name (``multi30k-en-train-5k``) or the path of
    its text file (``src/xmr/assets/querybanks/multi30k-en-train-5k.txt``); else None."""
    text = str(source)
    if text and "/" not in text and "\\" not in text and not text.endswith(".txt"):
        f = QUERYBANK_DIR / f"{text}.txt"
        return (text, f) if f.is_file() else None
    try:
        p = Path(text).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    if p.parent == QUERYBANK_DIR and p.suffix == ".txt" and p.is_file():
        return p.stem, p
    return None


def bundled_querybank_names() -> list[str]:
    return sorted(p.stem for p in QUERYBANK_DIR.glob("*.txt"))
