"""Shared CLI plumbing: the command registry and common options."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from ..encoders import DEFAULT_ENCODER
from ..paths import default_index_path

#: name -> (setup(parser), run(args) -> int, help)
COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


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
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def progress_flag(args) -> bool | None:
    return False if getattr(args, "quiet", False) else None
