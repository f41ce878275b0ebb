"""Array helpers shared by every layer: numpy views of arrays and tensors (never copies), L2 normalisation.

torch is never imported here; a tensor is recognised only when torch is already loaded.
"""
from __future__ import annotations

import sys

import numpy as np

from .errors import ConfigError


def to_numpy(x, name: str) -> np.ndarray:
    """A numpy view of ``x`` (ndarray, torch tensor on any device, or nested lists). No copy where possible."""
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported by someone
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()  # numpy has no bfloat16; upcasting is exact for both
        return t.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} must be an array or a torch tensor, got {type(x).__name__} ({e})") from None


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation, float32. Rows of zeros stay zero (they are never produced on purpose)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, eps)
