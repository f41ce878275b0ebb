"""Re-scoring of the candidate list with QB-Norm / dual softmax / CSLS (:mod:`xmr.rescore`), in the declared order.

Querybank statistics are per index item (bank columns = item ids, ascending): the bank's texts are scored against
every stored item vector once per (bank, model, index generation) and cached (:mod:`xmr.retrieval.querybank`).
Each candidate is re-scored in its own column with its current score (after moments / head re-scoring: for videos
that is max(whole, best window) or the head's exact score, while the bank statistics come from the stored item
vectors -- recorded as ``column_scores``). Re-scoring is exact *within the candidate pool*.

Defined for any query kind: the bank holds text queries; an image or vector query is normalised by the same
gallery statistics (recorded as ``query_modality``)."""
from __future__ import annotations

import threading

import numpy as np

from ...errors import ConfigError
from .base import Stage, StageContext


class RescoreStage(Stage):
    name = "rescore"

    def __init__(self, names, params: dict | None = None, bank: str | None = None):
        from ...rescore import build_pipeline, parse_rescore_names

        self.names = parse_rescore_names(",".join(names) if not isinstance(names, str) else names)
        self.step_params = params or {}
        self.bank_source = bank
        self._template = build_pipeline(self.names, self.step_params, None)  # validates names and parameters
        for s in self._template.steps:
            if self.bank_source is None and s.bank_use == "required":
                s._need_bank(None)
            if self.bank_source is None:
                raise ConfigError(f"re-scorer {s.name!r} on search results needs a querybank (--bank FILE or a "
                                  "dataset spec): without one its statistics would come from the other test queries,"
                                  " and a search has only one")
        self._banks: dict = {}  # (index path, generation) -> (pipeline, bank ids)
        self._lock = threading.Lock()
        self._records: list[dict] | None = None

    def params(self) -> dict:
        return {"steps": self._records if self._records is not None else
                [{"step": n, "params": self.step_params.get(n, {})} for n in self.names],
                "bank": self.bank_source, "column_scores": "current candidate score, bank stats of item vectors"}

    def _pipeline(self, ctx: StageContext):
        from ...rescore import build_pipeline
        from ..querybank import index_querybank

        key = (str(ctx.reader.path), ctx.reader.generation)
        with self._lock:
            hit = self._banks.get(key)
            if hit is None:
                bank, ids = index_querybank(ctx.reader, ctx.encoder, self.bank_source)
                pipe = build_pipeline(self.names, self.step_params, bank).prepare()
                self._banks = {key: (pipe, ids)}  # one generation kept: a newer index replaces it
                self._records = pipe.records()
                hit = self._banks[key]
        return hit

    def run(self, ctx: StageContext, cands):
        if not cands:
            return cands
        pipe, bank_ids = self._pipeline(ctx)
        cands.sort(key=lambda r: (-r.score, r.id))  # topk() takes each row sorted by decreasing score
        ids = np.array([r.id for r in cands], np.int64)
        cols = np.searchsorted(bank_ids, ids)
        if (cols >= len(bank_ids)).any() or (bank_ids[np.minimum(cols, len(bank_ids) - 1)] != ids).any():
            raise ConfigError("the querybank was built for another state of the index; build it again")
        scores = pipe.topk(np.array([[r.score for r in cands]], np.float64), cols[None])[0]
        for r, s in zip(cands, scores):
            r.score = float(s)
        return cands
