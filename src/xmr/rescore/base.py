"""The re-scorer interface and the helpers every method shares.

A re-scorer maps a (num_queries, num_items) text->item similarity matrix to new scores that are ranked the same
way (higher = better). Methods that need statistics of "other queries" get them either from a
:class:`~xmr.rescore.bank.QueryBank` (training queries: not transductive) or from the test queries themselves
(transductive: the score of one test query depends on the other test queries).

Directions: ``"t2i"`` scores are ranked along rows (each text ranks the items), ``"i2t"`` scores along columns.
A method may change only one direction; the other is then returned unchanged (``directions`` says which).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from .._arrays import to_numpy

DIRECTIONS = ("t2i", "i2t")


def as_matrix(x, name: str = "sims") -> np.ndarray:
    """A read-only 2-D float view of ``x`` (no copy where possible): re-scorers must never write to inputs."""
    a = to_numpy(x, name)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"{name} must be a non-empty 2-D (num_queries, num_items) matrix, got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must hold real numbers, got dtype {a.dtype}")
    v = a.view()
    v.flags.writeable = False
    return v


def out_dtype(a: np.ndarray) -> np.dtype:
    """Float dtype of a re-scored matrix: the input's float dtype (float32 stays float32), at least float32."""
    return np.result_type(a.dtype, np.float32)


def topk_rows(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Mean of the ``k`` largest values along ``axis`` (float64)."""
    n = a.shape[axis]
    if k > n:
        raise ConfigError(f"k={k} is larger than the {n} entries it averages over")
    part = -np.partition(-np.asarray(a, dtype=np.float64), k - 1, axis=axis)
    return part.take(np.arange(k), axis=axis).mean(axis=axis)


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be 't2i' or 'i2t', got {direction!r}")
    return direction


class Rescorer(ABC):
    """One re-scoring step. Subclasses set ``name`` and implement :meth:`dense` (and :meth:`topk` where it can
    be done exactly on candidate lists)."""

    name: ClassVar[str] = ""
    #: "required" | "optional" | "none": whether a querybank is needed
    bank_use: ClassVar[str] = "none"

    @abstractmethod
    def params(self) -> dict:
        """JSON-able parameters (recorded in results)."""

    def bank_requests(self) -> list[tuple]:
        """QueryBank statistics this step needs (computed in one pass for all steps)."""
        return []

    def directions(self, bank) -> tuple[str, ...]:
        """Directions whose ranking this step changes."""
        return DIRECTIONS

    def transductive(self, bank, direction: str) -> bool:
        """Whether the ``direction`` scores of one query depend on the other test queries."""
        return False

    @abstractmethod
    def dense(self, sims: np.ndarray, direction: str = "t2i", bank=None) -> np.ndarray:
        """Re-score a dense (Q, G) matrix for ranking in ``direction``; never modifies ``sims``."""

    def topk(self, scores: np.ndarray, cols: np.ndarray, bank=None) -> np.ndarray:
        """Re-score t2i candidate lists: ``scores`` (Q, K) of gallery columns ``cols`` (Q, K), each row sorted by
        decreasing score (as a top-K search returns them). Only methods that need no statistics of other test
        queries can do this; the result ranks the K candidates exactly as :meth:`dense` would."""
        raise ConfigError(f"re-scorer {self.name!r} cannot work on top-K candidate lists without a querybank")

    def _need_bank(self, bank) -> None:
        if self.bank_use == "required" and bank is None:
            raise ConfigError(f"re-scorer {self.name!r} needs a querybank (e.g. --bank coco:DIR:train2017 or a text "
                              "file with one query per line)")

    def record(self, bank) -> dict:
        """What a result must say about this step."""
        use_bank = bank is not None and self.bank_use != "none"
        dirs = self.directions(bank if use_bank else None)
        trans = [d for d in dirs if self.transductive(bank if use_bank else None, d)]
        return {
            "step": self.name,
            "params": self.params(),
            "querybank": bank.describe() if use_bank else None,
            "directions": list(dirs),  # the rankings this step changes
            "transductive": bool(trans),  # uses the test queries' own statistics in some direction
            "transductive_directions": trans,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"
