"""``xmr serve``: a local search service (REST API + web page) over one index.

Importing this package is cheap; :func:`create_app` imports FastAPI (extra ``xmr[serve]``) when it is called.

Modules:
    settings.py   ServeSettings: bind address, allowed hosts, request limits, caches
    live.py       LiveIndex: read-only store, a consistent snapshot (xmr.index.snapshot) rebuilt when the index
                  generation changes, item lookup, and the only place an item id becomes a filesystem path
    batcher.py    QueryEncoder: one worker thread encodes queries, coalescing concurrent text queries into a batch
    uploads.py    request-body limits, in-memory multipart parsing, safe image decoding of uploads
    thumbs.py     JPEG thumbnails in a bounded in-memory LRU (nothing is written to disk)
    metrics.py    Prometheus text exposition: request counts, request and per-stage latency histograms
    api.py        the REST routes (/api/search, /api/search/image, /api/search/vector, /api/items/..., /health,
                  /metrics); every search runs the one retrieval pipeline (xmr.retrieval)
    app.py        create_app(): wiring, error handlers (JSON errors, never a stack trace), the web page
    static/       index.html, app.js, app.css (no build step, no CDN)
"""
from __future__ import annotations

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(index_path, encoder=None, settings: ServeSettings | None = None, options=None):
    """Build the FastAPI app serving the index at ``index_path`` (see :func:`xmr.serve.app.create_app`)."""
    from .._deps import require

    require("fastapi", extra="serve")
    from .app import create_app as _create

    return _create(index_path, encoder=encoder, settings=settings, options=options)
