"""The hot route's short cut: ``GET /api/search?q=...&k=...&type=...`` answered without FastAPI's per-request
machinery (issue 16).

Profiling ``xmr serve`` under 16 concurrent cached text searches (py-spy, docs/benchmarks.md "`xmr serve` tail
latency") showed the search itself (query-cache lookup, FAISS over the snapshot, metadata) at a few percent of the
server's CPU per request; the rest was HTTP parsing and FastAPI: route matching, the dependency solver turning the
query string into the route's seven typed parameters, the endpoint and the response validation on anyio worker
threads. On a 2-core machine shared with the clients, CPU per request is latency: every request waits behind the
others' framework work.

:class:`FastTextSearch` is a pure ASGI middleware, innermost of the app's own (inside the security headers, the
Host check and the metrics, which therefore apply unchanged). It takes a request only when its query string holds
nothing but what it can check exactly as the route does — 1..8 ``q``, at most one ``k`` written in digits within
``1..max_k`` (no leading zero), at most one ``type`` of the four — and runs the route's own code
(``ServeContext.text_search``: the same checks, the same pipeline on a worker thread), validates and serialises the
answer with the route's response model (``exclude_none``, as the route), and answers HTTP errors with the app's own
handler. Anything else (other parameters, repeated ``k``, ``k=010``, a POST, another path) goes down the normal
FastAPI route, so the answers, status codes, error texts, metrics labels and OpenAPI schema are those of the route;
``tests/test_serve_speed.py`` compares both paths byte for byte. ``ServeSettings(fast_search=False)`` turns it off.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

_TYPES = frozenset(("image", "video", "moment", "all"))
_KEYS = frozenset(("q", "k", "type"))


def parse_plain_search(query_string: bytes, max_k: int, default_k: int, max_terms: int = 8):
    """``(texts, k, type)`` of a query string the fast path may answer, None when the FastAPI route must (anything
    it does not check exactly as the route would). Decoded as Starlette decodes query strings."""
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    q, k, type_ = [], None, None
    for key, value in pairs:
        if key == "q":
            q.append(value)
        elif key == "k" and k is None:
            if not (value.isascii() and value.isdigit() and value[0] != "0" and len(value) <= 6):
                return None
            k = int(value)
            if not 1 <= k <= max_k:
                return None
        elif key == "type" and type_ is None and value in _TYPES:
            type_ = value
        else:  # another parameter, a repeated k or type, an unknown type: the route decides
            return None
    if not 1 <= len(q) <= max_terms:
        return None
    return q, default_k if k is None else k, type_ or "all"


class FastTextSearch:
    """Pure ASGI middleware answering plain ``GET /api/search`` requests with the route's own code (module doc)."""

    def __init__(self, app, fastapi_app: FastAPI, ctx) -> None:
        self.app = app
        self.ctx = ctx
        self.fastapi_app = fastapi_app  # its HTTPException handler answers errors
        self._route = ctx.text_route  # the route build_router registered (the router puts it in scope["route"])
        self._adapter = TypeAdapter(self._route.response_model)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != "/api/search":
            return await self.app(scope, receive, send)
        s = self.ctx.settings
        args = parse_plain_search(scope.get("query_string", b""), s.max_k, s.default_k)
        if args is None:
            return await self.app(scope, receive, send)
        scope["route"] = self._route  # the metrics label, as when the router matched it
        try:
            body = await self.ctx.text_search(*args)
        except StarletteHTTPException as exc:  # the app's handler: {"error": ...} with the status
            handler = self.fastapi_app.exception_handlers[StarletteHTTPException]
            response = await handler(Request(scope, receive), exc)
        else:  # the route's response model, exclude_none, JSON as FastAPI writes it
            content = self._adapter.dump_json(self._adapter.validate_python(body), exclude_none=True, by_alias=True)
            response = Response(content, media_type="application/json")
        await response(scope, receive, send)


__all__ = ["FastTextSearch", "parse_plain_search"]
