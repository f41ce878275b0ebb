"""xmr: cross-modal retrieval (text <-> images) with an offline default model, an on-disk index, and the
field's exact evaluation protocols.

Heavy parts (torch, models) load on first use: ``import xmr`` is cheap.
"""
from __future__ import annotations

from .errors import MediaError as MediaError
from .errors import XmrError as XmrError

__version__ = "0.1.0"

_LAZY = {
    "create_encoder": ("xmr.encoders", "create_encoder"),
    "list_encoders": ("xmr.encoders", "list_encoders"),
    "load_dataset": ("xmr.data", "load_dataset"),
    "list_datasets": ("xmr.data", "list_datasets"),
    "evaluate_sims": ("xmr.eval", "evaluate_sims"),
    "evaluate_model": ("xmr.eval", "evaluate_model"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'xmr' has no attribute {name!r}")


__all__ = ["__version__", "XmrError", "MediaError", *_LAZY]
