"""Match probability between probabilistic embeddings (PCME, Chun et al., CVPR 2021).

PCME represents an input as a Gaussian and compares two inputs through K Monte-Carlo samples of each. Eq. (2) of
the paper (written with J samples there):

    p(m | x, y) ≈ 1/K_x·K_y · Σ_j Σ_j'  σ(−a · ‖z_x^j − z_y^j'‖₂ + b)

with ``σ`` the logistic sigmoid and ``a > 0``, ``b`` learned scalars.

Deviations from the reference code (naver-ai/pcme ``criterions/probemb.py``), stated so numbers can be compared:

* The reference's ``match_prob`` uses ``exp(s) / (exp(s) + exp(−s))``, which equals ``σ(2s)``; this module uses
  the paper's ``σ(s)``. Pass ``a`` and ``b`` doubled to reproduce the reference's numbers.
* The reference adds ``1e-6`` under the square root of the distance (for gradients); this is the exact distance.
* Queries and items may carry different numbers of samples (``K_x != K_y``); the mean is over all pairs.

numpy in, numpy out; inputs are never modified.
"""
from __future__ import annotations

import numpy as np

from .._arrays import to_numpy
from ..errors import ConfigError

#: pairwise distances computed per block of about this many (sample, sample) pairs
_BLOCK_PAIRS = 1 << 22


def _samples(x, name: str) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != 3:
        raise ConfigError(f"{name} must be (N, K, D) samples (N inputs, K samples each, D dims), "
                          f"got shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise ConfigError(f"{name} is empty (shape {tuple(arr.shape)})")
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or inf")
    return arr


def _scalar(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {v!r}") from None
    if not np.isfinite(f):
        raise ConfigError(f"{name} must be finite, got {v!r}")
    return f


def _sigmoid(s: np.ndarray) -> np.ndarray:
    # numerically stable for large |s|
    out = np.empty_like(s)
    pos = s >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-s[pos]))
    e = np.exp(s[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def match_probability(query_samples, item_samples, a, b) -> np.ndarray:
    """(Q, Kq, D) and (G, Kg, D) samples -> (Q, G) float64 match probabilities, PCME Eq. (2).

    ``a`` (> 0) scales the Euclidean distance, ``b`` shifts it. Computed in blocks of query rows so memory stays
    bounded (about 32 MiB of distances at a time) whatever Q and G are."""
    q = _samples(query_samples, "query_samples")
    g = _samples(item_samples, "item_samples")
    if q.shape[2] != g.shape[2]:
        raise ConfigError(f"query_samples have {q.shape[2]} dims but item_samples have {g.shape[2]}")
    a, b = _scalar(a, "a"), _scalar(b, "b")
    if a <= 0:
        raise ConfigError(f"a must be > 0 (a larger distance must mean a lower match probability), got {a}")
    nq, kq, d = q.shape
    ng, kg, _ = g.shape
    gf = g.reshape(ng * kg, d).astype(np.float64)
    g_sq = np.einsum("nd,nd->n", gf, gf)
    out = np.empty((nq, ng), dtype=np.float64)
    step = max(1, _BLOCK_PAIRS // max(kq * ng * kg, 1))
    for start in range(0, nq, step):
        stop = min(start + step, nq)
        qf = q[start:stop].reshape((stop - start) * kq, d).astype(np.float64)
        sq = np.einsum("nd,nd->n", qf, qf)[:, None] + g_sq[None, :] - 2.0 * (qf @ gf.T)
        dist = np.sqrt(np.maximum(sq, 0.0))
        p = _sigmoid(-a * dist + b).reshape(stop - start, kq, ng, kg)
        out[start:stop] = p.mean(axis=(1, 3))
    return out
