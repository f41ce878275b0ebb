"""Re-scoring of the candidate list with QB-Norm / dual softmax / CSLS (:mod:`xmr.rescore`), in the declared order.

Querybank statistics are per index item (bank columns = item ids, ascending): the bank's texts are scored against
every stored item vector once per (bank, model, index generation) and cached (:mod:`xmr.retrieval.querybank`).
Each candidate is re-scored in its own column with its current score (after moments / head re-scoring: for videos
that is max(whole, best window) or the head's exact score, while the bank statistics come from the stored item
vectors -- recorded as ``column_scores``). Re-scoring is exact *within the candidate pool*.

Two origins (recorded as ``origin``):

* ``option``: the user asked (``--rescore``, ``SearchOptions.rescore``). Defined for any query kind: the bank holds
  text queries; an image or vector query is normalised by the same gallery statistics.
* ``model default``: the model recommends it (``Encoder.rescore_default``: ``concept``'s QB-Norm with its bundled
  bank) and the user gave no ``--rescore``. Applied to TEXT queries only (every term a text): an image, vector or
  composed query is left as the first stage ranked it, never normalised by a bank of texts. The record says which
  (``applied``, and ``skipped`` with the reason)."""
from __future__ import annotations

import threading

import numpy as np

from ...errors import ConfigError
from .base import Stage, StageContext

OPTION, MODEL_DEFAULT = "option", "model default"


def model_rescore_default(encoder):
    """The :class:`~xmr.encoders.base.RescoreDefault` ``encoder`` declares, or None (most models; duck-typed
    encoders without the attribute)."""
    return getattr(encoder, "rescore_default", None)


def is_text_query(query) -> bool:
    """Every term is a text (negative text terms included) and no composer joins them with an image."""
    terms = getattr(query, "terms", ())
    return bool(terms) and all(t.kind == "text" for t in terms) and getattr(query, "composer", None) is None


class RescoreStage(Stage):
    name = "rescore"

    def __init__(self, names, params: dict | None = None, bank: str | None = None, origin: str = OPTION,
                 label: str | None = None):
        from ...rescore import build_pipeline, parse_rescore_names

        if origin not in (OPTION, MODEL_DEFAULT):
            raise ConfigError(f"rescore origin must be {OPTION!r} or {MODEL_DEFAULT!r}, got {origin!r}")
        self.names = parse_rescore_names(",".join(names) if not isinstance(names, str) else names)
        self.step_params = params or {}
        self.bank_source = bank
        self.origin = origin
        self.label = label or f"{','.join(self.names)} ({origin}" + (f", bank {bank})" if bank else ")")
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

    @property
    def text_only(self) -> bool:
        return self.origin == MODEL_DEFAULT

    def params(self) -> dict:
        return {"steps": self._records if self._records is not None else
                [{"step": n, "params": self.step_params.get(n, {})} for n in self.names],
                "bank": self.bank_source, "origin": self.origin, "summary": self.label,
                "queries": "text queries only" if self.text_only else "any query",
                "column_scores": "current candidate score, bank stats of item vectors"}

    def record_for(self, ctx: StageContext) -> dict:
        rec = self.record()
        if self.text_only and not is_text_query(ctx.emb.query):
            return {**rec, "applied": False, "skipped": "not a text query: the model's re-scoring uses a bank of "
                                                       "texts and applies to text queries only"}
        return {**rec, "applied": True}

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
        if not cands or (self.text_only and not is_text_query(ctx.emb.query)):
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
