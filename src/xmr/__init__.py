"""xmr: cross-modal retrieval (text <-> images) with an offline default model, an on-disk index, and the
field's exact evaluation protocols."""
from __future__ import annotations

__version__ = "0.1.0"

from .encoders import create_encoder as create_encoder
from .encoders import list_encoders as list_encoders
from .errors import MediaError as MediaError
from .errors import XmrError as XmrError

__all__ = ["__version__", "create_encoder", "list_encoders", "XmrError", "MediaError"]
