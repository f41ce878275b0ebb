"""Shared CLI plumbing: the command registry and common options."""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Callable

from ..encoders import DEFAULT_ENCODER
from ..paths import default_index_path

#: name -> (setup(parser), run(args) -> int, help)
COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


def json_object(text: str | None, flag: str, example: str | None = '{"margin": 0.2}') -> dict:
    """A JSON-object option (``--config``, ``--loss-config``, ...): ``{}`` when not given; ConfigError naming the flag
    when it is not valid JSON or not an object."""
    from ..errors import ConfigError

    if not text:
        return {}
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{flag} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{flag} must be a JSON object" + (f", e.g. '{example}'" if example else ""))
    return obj


def register_command(name: str, help: str, setup: Callable, run: Callable) -> None:
    """Add a subcommand: ``setup(parser)`` declares its options, ``run(args) -> exit code`` does the work."""
    COMMANDS[name] = (setup, run, help)


def add_index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=None, metavar="PATH",
                   help=f"index folder (default: $XMR_INDEX or {default_index_path()})")


def add_model_arg(p: argparse.ArgumentParser, default: str | None = DEFAULT_ENCODER) -> None:
    p.add_argument("--model", default=default, metavar="SPEC",
                   help="encoder spec: concept (default, offline), hf:<hub id or dir>, openclip:<arch>[:<tag>], tiny"
                   + ("" if default else " (default: the index's own model)"))


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def index_path(args) -> str:
    return str(args.index) if args.index else str(default_index_path())


def print_json(obj) -> None:
    """``obj`` as indented JSON. Strings keep their characters, except the lone surrogates that stand for bytes
    of a non-UTF-8 file name: those are written as ``\\udcXX`` escapes (valid JSON; ``json.loads`` then
    ``os.fsencode`` give the original bytes back), never as a UnicodeEncodeError."""
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` is a usage error, not a traceback or an empty run)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def progress_flag(args) -> bool | None:
    return False if getattr(args, "quiet", False) else None
