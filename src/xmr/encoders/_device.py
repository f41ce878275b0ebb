"""Device selection shared by all encoders."""
from __future__ import annotations

import torch

from ..errors import ConfigError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` (or ``"auto"``) -> ``cuda`` when available, else ``cpu``.

    Anything else is parsed by torch and checked against what this machine has, so a bad ``--device`` fails here
    with a :class:`~xmr.errors.ConfigError` instead of deep inside the first forward pass.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"invalid device {device!r} ({e}); use cpu, cuda, cuda:N or mps") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}); use --device cpu"
            )
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif d.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} requested but MPS is not available; use --device cpu")
    return d
