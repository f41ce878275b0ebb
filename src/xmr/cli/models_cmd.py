"""``xmr models``: list encoder names."""
from __future__ import annotations

from ._common import register_command


def setup(p):
    pass


def run(args) -> int:
    from ..encoders import DEFAULT_ENCODER, list_encoders

    for name, help_ in list_encoders():
        mark = " (default)" if name == DEFAULT_ENCODER else ""
        print(f"{name}{mark}: {help_}")
    return 0


register_command("models", "list the available encoders", setup, run)
