"""Several re-scoring steps in a declared order, plus what a result records about them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from . import RESCORERS
from .bank import QueryBank
from .base import Rescorer, as_matrix, check_direction


def parse_rescore_names(text: str) -> list[str]:
    """``"qbnorm,dsl"`` -> ``["qbnorm", "dsl"]`` (applied in this order). Unknown names: ConfigError."""
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"empty re-scoring list {text!r}; available: {', '.join(RESCORERS.names())}")
    for n in names:
        RESCORERS.get(n)  # raises with the list of names
    if len(set(names)) != len(names):
        raise ConfigError(f"re-scoring list {text!r} names a method twice")
    return names


@dataclass
class RescorePipeline:
    """Steps applied in order; each step sees the previous step's output. Querybank statistics always come from
    the *raw* bank similarities (a bank is never re-scored) and are computed for all steps in one pass."""

    steps: list[Rescorer]
    bank: QueryBank | None = None
    _prepared: bool = field(default=False, repr=False)

    def prepare(self) -> "RescorePipeline":
        for s in self.steps:
            if s.bank_use == "required" and self.bank is None:
                s._need_bank(None)
        if self.bank is not None and not self._prepared:
            self.bank.compute([r for s in self.steps if s.bank_use != "none" for r in s.bank_requests()])
        self._prepared = True
        return self

    def _bank_for(self, step: Rescorer):
        return self.bank if step.bank_use != "none" else None

    def dense(self, sims, direction: str = "t2i") -> np.ndarray:
        """Re-scored copy of the (Q, G) matrix ``sims`` for ranking in ``direction``."""
        check_direction(direction)
        self.prepare()
        out = as_matrix(sims)
        if self.bank is not None and self.bank.num_items != out.shape[1]:
            raise ConfigError(f"the querybank scores {self.bank.num_items} items but sims has {out.shape[1]} columns")
        for s in self.steps:
            out = s.dense(out, direction, self._bank_for(s))
        return np.array(out, copy=True) if not out.flags.writeable else out

    def topk(self, scores, cols) -> np.ndarray:
        """Re-scored t2i candidate scores (Q, K) for gallery columns ``cols`` (Q, K; -1 = empty slot)."""
        self.prepare()
        out = as_matrix(scores, "scores")
        for s in self.steps:
            out = s.topk(out, cols, self._bank_for(s))
        return np.array(out, copy=True)

    def dense_via_topk(self, sims, k: int) -> np.ndarray:
        """What a top-``k`` search would rank, as a dense t2i matrix: each row's ``k`` best dual candidates get
        their :meth:`topk` scores and are lifted above the row's other items, which keep their dual order."""
        from ..rerank.base import topk_candidates

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"candidate depth must be a positive integer, got {k!r}")
        s = np.asarray(as_matrix(sims), dtype=np.float64)
        cols = topk_candidates(s, k)
        new = self.topk(np.take_along_axis(s, cols, 1), cols).astype(np.float64)
        out = s.copy()
        lift = s.max(axis=1) - new.min(axis=1) + 1.0
        np.put_along_axis(out, cols, new + lift[:, None], axis=1)
        return out

    def records(self) -> list[dict]:
        """One dict per step: ``step``, ``params``, ``querybank`` (or None), ``directions``, ``transductive``."""
        return [s.record(self._bank_for(s)) for s in self.steps]

    @property
    def transductive(self) -> bool:
        return any(r["transductive"] for r in self.records())


def build_pipeline(names, params: dict[str, dict] | None = None, bank: QueryBank | None = None) -> RescorePipeline:
    """``build_pipeline("qbnorm,dsl", {"qbnorm": {"beta": 20}, "dsl": {"temperature": 0.01}}, bank)``."""
    if isinstance(names, str):
        names = parse_rescore_names(names)
    params = params or {}
    unknown = set(params) - set(names)
    if unknown:
        raise ConfigError(f"parameters given for re-scorers not in the list: {sorted(unknown)}")
    steps = []
    for n in names:
        try:
            steps.append(RESCORERS.get(n)(**params.get(n, {})))
        except TypeError as e:
            raise ConfigError(f"re-scorer {n!r}: {e}") from None
    return RescorePipeline(steps, bank)
