"""Sign random projection (Charikar's SimHash / LSH for cosine): the training-free floor every learned hash is
compared with. ``bits = (x @ R >= 0)`` with ``R`` Gaussian (seeded)."""
from __future__ import annotations

import numpy as np

from .._arrays import to_numpy
from ..errors import ConfigError


def lsh_codes(features, bits: int, seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, bits) uint8 0/1 codes; the same seed gives the same projection."""
    x = to_numpy(features, "features")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ConfigError(f"bits must be a positive integer, got {bits!r}")
    proj = np.random.default_rng(seed).normal(size=(x.shape[1], bits))
    return (x.astype(np.float64) @ proj >= 0).astype(np.uint8)
