"""``create_app``: the FastAPI application of ``xmr serve`` (API + web page), safe by default.

Safety properties (tested in ``tests/test_serve_api.py``):

* media is addressed by integer item id; the file path comes from the index and must resolve under its root;
* query length, ``k`` and upload size are bounded; bad input gets a 4xx ``{"error": ...}``;
* an unexpected exception is logged with its traceback and answered with a generic 500 ``{"error": ...}``;
* Host headers are checked (DNS-rebinding guard): a loopback server only answers to loopback names (400 JSON else);
* responses carry ``nosniff`` / no-referrer / frame-deny headers, the page a strict Content-Security-Policy.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..encoders.base import Encoder
from ..errors import ConfigError
from ..retrieval import SearchOptions, build_pipeline
from .api import ServeContext, build_router
from .batcher import QueryEncoder
from .live import LiveIndex
from .metrics import Metrics, MetricsMiddleware
from .settings import ServeSettings
from .thumbs import ThumbnailCache
from .uploads import PixelBudget

log = logging.getLogger(__name__)

_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
           "interactive.js": "text/javascript; charset=utf-8"}
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
             "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# Swagger UI (/docs): its one inline script is allowed by its hash (computed when the page is built); React sets
# style attributes, hence 'unsafe-inline' for styles on that page only
_DOCS_CSP = ("default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY")]


# RFC 3986 host[:port] (the pattern Starlette's TrustedHostMiddleware parses with): a reg-name or a [bracketed] IP literal
_HOST_RE = re.compile(
    r"^(?P<host>[a-z0-9._~%!$&'()*+,;=-]+|\[(?:(?P<ipv6>[a-f0-9]*:[a-f0-9.:]+)|(?-i:v)[a-f0-9]+\.[a-z0-9._~!$&'()*+,;=:-]+)\])"
    r"(?::(?P<port>[0-9]+))?$", re.IGNORECASE)


def _host_of(header: str | None) -> str | None:
    """The lower-cased host of a ``Host`` header (IPv6 literals keep their brackets); None when missing/malformed."""
    if header is None:
        return None
    m = _HOST_RE.fullmatch(header)
    if m is None:
        return None
    if m["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(m["ipv6"])
        except ValueError:
            return None
    return m["host"].lower()


class _HostCheck:
    """DNS-rebinding guard: answers a request whose ``Host`` is not allowed with a 400 JSON ``{"error": ...}``.

    The rules of Starlette's ``TrustedHostMiddleware`` (which answered in plain text): ``"*"`` allows any host, a
    ``"*.example.com"`` pattern any sub-domain, any other name matches exactly (case-insensitive, port ignored).
    Sits inside ``_SecurityHeaders`` so the refusal carries the security headers too.
    """

    def __init__(self, app, allowed_hosts: list[str]) -> None:
        for pattern in allowed_hosts:
            if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and not pattern.startswith("*.")):
                raise ConfigError(f"allowed host {pattern!r}: a wildcard must be '*' or like '*.example.com'")
        self.app = app
        self.allowed = [p.lower() for p in allowed_hosts]
        self.allow_any = "*" in self.allowed

    def allows(self, header: str | None) -> bool:
        if self.allow_any:
            return True
        host = _host_of(header)
        if host is None:
            return False
        return any(host == p or (p.startswith("*") and host.endswith(p[1:])) for p in self.allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.allow_any:
            return await self.app(scope, receive, send)
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        if self.allows(header):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps({"error": "invalid host header: this server only answers to its allowed host names "
                                    "(see --allowed-host)"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _SecurityHeaders:
    """Adds ``nosniff``, ``no-referrer`` and ``DENY`` framing headers to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def _send(msg):
            if msg["type"] == "http.response.start":
                msg["headers"] = list(msg.get("headers", [])) + _SECURITY_HEADERS
            await send(msg)

        await self.app(scope, receive, _send)


def _check_moment_model(directory, encoder):
    """The server's SQuiDNet (``xmr serve --moment-model``), loaded and checked against the index's model width
    at start (another width stops the server with the reason); None without one."""
    if directory is None:
        return None
    from ..localize.squidnet import SQuiDNet

    model = SQuiDNet.load(directory)
    if model.config.dim != encoder.dim:
        raise ConfigError(f"--moment-model {directory} was trained on {model.config.dim}-wide features but the "
                          f"index's model {encoder.spec} gives {encoder.dim}: train it on this index's encoder "
                          "(xmr train-moments)")
    model.eval()
    return model


def _check_composer(directory, encoder):
    """(name, absolute folder) of the server's composer, loaded and checked against the index's model at start
    (a composer of another model or width stops the server with the reason); None without one."""
    if directory is None:
        return None
    from ..compose import check_compatible
    from ..retrieval.query import loaded_composer

    c = loaded_composer(directory)
    check_compatible(c, encoder.dim, encoder.spec)
    return c.name, os.path.abspath(os.path.expanduser(str(directory)))


def _expert_options(options: SearchOptions, live: LiveIndex, use: bool) -> SearchOptions:
    """The experts stage on an index built with --experts (every expert it carries unless ``options`` names some);
    none with ``use=False``. A fusion rule or weights for an index that carries no experts stop the server."""
    import dataclasses

    carried = live.reader().expert_names()
    if not use or options.recipe_tower is not None:  # --experts none; a recipe tower scores every item itself
        return dataclasses.replace(options, experts=None)
    if not carried:
        if options.expert_fusion != "vista" or options.expert_weights or options.experts:
            raise ConfigError(f"--experts / --expert-fusion / --expert-weight apply to an index built with --experts, "
                              f"and index {live.path} carries none (xmr index DIR --experts NAMES)")
        return options
    return options if options.experts is not None else dataclasses.replace(options, experts=())


def _check_experts_stage(pipeline, live: LiveIndex, encoder) -> None:
    """The experts stage checked against the index at start: the experts it names are carried, a trained fuser
    (--expert-fusion laff:DIR) fits the index's model, width and experts, a recipe tower (--recipe-tower) the
    index's width; else the server does not start."""
    from ..retrieval.stages import ExpertStage, RecipeStage

    for st in pipeline.stages:
        if isinstance(st, (ExpertStage, RecipeStage)):
            st.check_index(live.reader(), encoder, None)


def create_app(index_path: str | os.PathLike, encoder: Encoder | None = None,
               settings: ServeSettings | None = None, options: SearchOptions | None = None) -> FastAPI:
    """The app serving the index at ``index_path``.

    Args:
        index_path: an index folder made by ``xmr index`` (opened read-only; updates are picked up live).
        encoder: the query encoder; default: ``create_encoder(<the index's model spec>)``. Must match the index.
        settings: limits, allowed hosts, caches (:class:`ServeSettings`).
        options: the stages every search runs (:class:`xmr.retrieval.SearchOptions`: re-scoring with a querybank,
            cross-encoder re-ranking, candidate pool); the index's own video head re-scores by default.
    """
    s = settings or ServeSettings()
    live = LiveIndex(index_path, allow_outside_root=s.allow_outside_root)
    if encoder is None:
        from ..encoders import create_encoder

        encoder = create_encoder(live.model_spec, device=s.device)
    elif encoder.spec != live.model_spec:
        raise ConfigError(f"index {live.path} was built with {live.model_spec!r}, the encoder is {encoder.spec!r}")
    thumbs = ThumbnailCache(s.thumb_size, s.thumb_cache_bytes)

    def gauges():
        snap = live._snap
        return {
            "xmr_index_items": ("gauge", "Items in the served index snapshot.", snap.count if snap else 0),
            "xmr_index_generation": ("gauge", "Generation of the served index snapshot.",
                                     snap.generation if snap else 0),
            "xmr_index_reloads_total": ("counter", "Snapshot rebuilds after the index changed.", live.reloads),
            "xmr_thumbnail_cache_bytes": ("gauge", "Bytes of JPEG thumbnails held in memory.", thumbs.nbytes),
            "xmr_query_encoder_batches_total": ("counter", "Forward passes of the query encoder (concurrent text "
                                                "queries share one).", queries.batches),
            "xmr_query_cache_hits_total": ("counter", "Text queries answered from the query-embedding cache.",
                                           queries.cache.hits),
            "xmr_query_cache_misses_total": ("counter", "Text queries that had to be encoded.", queries.cache.misses),
        }

    composer = _check_composer(s.composer, encoder)  # before the query encoder thread starts
    moment_model = _check_moment_model(s.moment_model, encoder)
    queries = QueryEncoder(encoder, s.max_text_batch, s.query_cache_size)
    options = _expert_options(options or SearchOptions(), live, s.experts)
    pipeline = build_pipeline(encoder, options)  # per-request checks (type filter, query kind) answer 422 with why
    _check_experts_stage(pipeline, live, encoder)
    ctx = ServeContext(settings=s, live=live, queries=queries, thumbs=thumbs, metrics=Metrics(gauges),
                       pipeline=pipeline, uploads=PixelBudget(max(s.upload_pixel_budget, s.max_upload_pixels),
                                                              s.upload_wait_s), composer=composer,
                       moment_model=moment_model)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        ctx.queries.close()

    app = FastAPI(
        title="xmr search service",
        version=__version__,
        description="Search an xmr index with text or an image. Items are addressed by id only. "
                    "Errors are JSON objects `{\"error\": \"...\"}`.",
        lifespan=lifespan,
        redoc_url=None,
        docs_url=None,  # served by _add_docs from local files: the default page loads Swagger UI from a CDN
        redirect_slashes=False,
    )
    app.state.xmr = ctx
    app.include_router(build_router(ctx))
    _add_page(app)
    _add_docs(app)
    _add_error_handlers(app)
    # outermost last: security headers -> host check (a JSON 400) -> metrics -> [fast text search] -> routes
    if s.fast_search:
        from .fast_search import FastTextSearch

        app.add_middleware(FastTextSearch, fastapi_app=app, ctx=ctx)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    app.add_middleware(_HostCheck, allowed_hosts=s.allowed_host_list())
    app.add_middleware(_SecurityHeaders)
    return app


def _add_page(app: FastAPI) -> None:
    static = resources.files("xmr.serve") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    assets = {name: (static / name).read_bytes() for name in _STATIC}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page():
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str):
        if name not in assets:  # a fixed list of names: nothing from the URL reaches the filesystem
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(assets[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})


_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def _add_docs(app: FastAPI) -> None:
    """The OpenAPI page at ``/docs`` with Swagger UI from the ``swagger-ui-bundle`` wheel (no CDN: works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    assets = {n: (swagger_ui_path / n).read_bytes() for n in _DOCS_ASSETS} if swagger_ui_path else {}

    @app.get("/docs", include_in_schema=False)
    def docs_page():
        if not assets:
            return HTMLResponse("<p>The interactive API page needs <code>pip install 'xmr[serve]'</code> "
                                "(swagger-ui-bundle). The schema is at <a href='/openapi.json'>/openapi.json</a>.</p>",
                                headers={"Content-Security-Policy": _DOCS_CSP.format(hashes="")})
        page = get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="")
        page.headers["Content-Security-Policy"] = _DOCS_CSP.format(hashes=_inline_script_hashes(page.body))
        return page

    @app.get("/docs-assets/{name}", include_in_schema=False)
    def docs_asset(name: str):
        if name not in assets:  # fixed names only
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(assets[name], media_type=_DOCS_ASSETS[name], headers={"Cache-Control": "max-age=86400"})


def _inline_script_hashes(html: bytes) -> str:
    """CSP ``'sha256-...'`` sources of the inline ``<script>`` blocks of a page."""
    import base64
    import hashlib

    bodies = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in bodies)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and msg == "Not Found":
            msg = "not found"
        return JSONResponse({"error": msg}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)
