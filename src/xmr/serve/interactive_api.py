"""REST routes for queries that talk back (docs/interactive.md): ``GET /api/ask`` (Ask&Confirm: results of the
query refined by the confirmed / rejected details, plus the next proposals) and ``GET /api/search/feedback``
(relevance feedback: Rocchio on the results marked good / bad). Kept apart from ``api.py``'s routes; they reuse
its search helper, so stages, metrics and errors are the same."""

import threading
from typing import Annotated, Callable, Optional

import numpy as np
from fastapi import HTTPException, Query
from pydantic import BaseModel, Field

from ..errors import ConfigError
from ..retrieval import Query as RQuery
from ..retrieval import encode_query
from ..retrieval.interactive import AskConfirm, check_answers, check_feedback, propose, refine_query, rocchio
from ..retrieval.interactive.askconfirm import query_texts
from .api import SearchResponse, _ERRORS, _Batched


class ProposalItem(BaseModel):
    detail: str = Field(description="a detail the query leaves out: confirm or reject it")
    gain: float = Field(description="expected information of the answer, bits")
    p_yes: float = Field(description="the model's probability that the target shows the detail")


class AskResponse(SearchResponse):
    confirmed: list[str]
    rejected: list[str]
    proposals: list[ProposalItem]


def add_interactive_routes(router, ctx, search: Callable[[RQuery, int, str], dict]) -> None:
    """Add the routes to ``router``; ``search(query, k, type)`` is ``api.py``'s search helper."""
    s, live = ctx.settings, ctx.live
    state = {"ac": None}
    lock = threading.Lock()

    def asker() -> AskConfirm:
        with lock:
            if state["ac"] is None:
                state["ac"] = AskConfirm(ctx.queries.encoder)
            return state["ac"]

    K = Annotated[int, Query(ge=1, le=s.max_k, description=f"number of results, 1..{s.max_k}")]
    T = Annotated[str, Query(pattern="^(image|video|all)$", description="media type filter")]
    Q = Annotated[str, Query(min_length=1, max_length=s.max_query_chars, description="the (partial) text query")]
    D = Annotated[Optional[list[str]], Query(max_length=16, description="details (repeatable)")]
    IDS = Annotated[Optional[list[int]], Query(max_length=100, description="result ids (repeatable)")]

    def _text_query(q: str) -> RQuery:
        if not q.strip():
            raise HTTPException(422, "empty query")
        return RQuery.text(q.strip())

    @router.get("/api/ask", response_model=AskResponse, response_model_exclude_none=True, responses=_ERRORS,
                tags=["interactive"], summary="Ask&Confirm: results of the refined query and details to ask about")
    def ask(q: Q, k: K = s.default_k, type: T = "all", confirm: D = None, reject: D = None):
        query = _text_query(q)
        ac = asker()
        try:
            reader = live.reader()
            bank = ac.bank(reader)
            conf, rej = check_answers(confirm, reject, bank)
            refined = refine_query(query, conf, rej, ac.config)
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        res = search(refined, max(k, ac.config.candidates), type)
        ids = [r["id"] for r in res["results"]]
        props = propose(bank, reader.item_vectors(ids), np.array([r["score"] for r in res["results"]]), ac.config,
                        exclude=(*conf, *rej), query_texts=query_texts(query))
        res.update(k=k, results=res["results"][:k], confirmed=list(conf), rejected=list(rej),
                   proposals=[p.to_dict() for p in props])
        return res

    @router.get("/api/search/feedback", response_model=SearchResponse, response_model_exclude_none=True,
                responses=_ERRORS, tags=["interactive"],
                summary="Relevance feedback: the text query moved towards good results, away from bad (Rocchio)")
    def feedback(q: Q, k: K = s.default_k, type: T = "all", good: IDS = None, bad: IDS = None, shown: IDS = None):
        query = _text_query(q)
        try:
            reader = live.reader()
            g, b = check_feedback(good, bad, reader, shown)
            emb = encode_query(_Batched(ctx.queries), query)
            vec = rocchio(emb.fused, reader.item_vectors(g), reader.item_vectors(b))
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        res = search(RQuery.vector(vec), k, type)
        res["query"] = {"query": query.describe(), "feedback": {"good": g, "bad": b}}
        return res


__all__ = ["add_interactive_routes"]
