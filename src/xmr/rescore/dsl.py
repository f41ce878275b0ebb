"""Dual softmax (DSL; CAMoE, Cheng et al. 2021; TS2-Net, Liu et al. 2022): re-weight each score by a softmax prior
computed across the *other queries*.

``dual_softmax(S, temperature, axis) = S * softmax(S / temperature, axis)``. For text->item ranking the prior is
a softmax over the text queries of each item column (``axis=0``); for item->text over the items of each text row
(``axis=1``). CAMoE writes the temperature as a multiplier (``logit_scale = 100``): that is ``temperature=0.01``
here. Over the test queries this is **transductive** (one query's scores depend on the other test queries).

With a querybank (:class:`DualSoftmax` given a bank) the t2i prior uses the bank's queries instead:
``S[q, g] * exp(S[q, g] / T - logsumexp_n(B[n, g] / T))``, not transductive, and usable on top-K candidates.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from . import RESCORERS
from .base import Rescorer, as_matrix, check_direction, out_dtype


def _check_t(temperature: float) -> float:
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ConfigError(f"dsl: temperature must be a positive number, got {temperature!r}")
    return t


def dual_softmax(sims, temperature: float = 1.0, axis: int = 0) -> np.ndarray:
    """``sims * softmax(sims / temperature, axis)`` as a new array (stable softmax; input dtype, >= float32)."""
    t = _check_t(temperature)
    if axis not in (0, 1, -1, -2):
        raise ConfigError(f"dsl: axis must be 0 (over queries) or 1 (over items), got {axis!r}")
    s = as_matrix(sims)
    x = s.astype(np.float64) / t
    x -= x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return (s * x).astype(out_dtype(s), copy=False)


def dual_softmax_bank(sims, lse: np.ndarray, temperature: float) -> np.ndarray:
    """Querybank prior: ``sims * exp(sims / T - lse)`` with ``lse[g] = logsumexp_n(bank[n, g] / T)``."""
    s = as_matrix(sims)
    x = s.astype(np.float64) / temperature - lse
    return (s * np.exp(x)).astype(out_dtype(s), copy=False)


@RESCORERS.register("dsl", help="dual softmax (CAMoE/TS2-Net); transductive unless a --bank is given")
class DualSoftmax(Rescorer):
    name = "dsl"
    bank_use = "optional"

    def __init__(self, temperature: float = 1.0):
        self.temperature = _check_t(temperature)

    def params(self) -> dict:
        return {"temperature": self.temperature}

    def bank_requests(self) -> list[tuple]:
        return [("lse", 1.0 / self.temperature)]

    def transductive(self, bank, direction):
        return bank is None or direction == "i2t"

    def dense(self, sims, direction="t2i", bank=None):
        if check_direction(direction) == "i2t":
            return dual_softmax(sims, self.temperature, axis=1)
        if bank is None:
            return dual_softmax(sims, self.temperature, axis=0)
        return dual_softmax_bank(sims, bank.logsumexp(1.0 / self.temperature), self.temperature)

    def topk(self, scores, cols, bank=None):
        if bank is None:
            return super().topk(scores, cols, bank)
        c = np.asarray(cols)
        lse = bank.logsumexp(1.0 / self.temperature)
        s = as_matrix(scores, "scores")
        out = dual_softmax_bank(s, lse[np.where(c >= 0, c, 0)], self.temperature)
        return np.where(c >= 0, out, s)
