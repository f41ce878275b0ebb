"""REST routes. Every error is ``{"error": "..."}`` with a 4xx status (see ``app.py`` for the handlers).

Clients address media by integer item id only: no request parameter or path is ever joined to a filesystem path.
"""

import mimetypes
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from ..errors import MissingExtraError, XmrError
from .batcher import QueryEncoder
from .live import LiveIndex, Snapshot, parse_item_id, relative_path
from .metrics import CONTENT_TYPE, Metrics
from .settings import ServeSettings
from .thumbs import ThumbnailCache
from .uploads import UploadError, decode_image, extract_upload, read_body_limited

MediaFilter = Literal["image", "video", "all"]


class ResultItem(BaseModel):
    rank: int = Field(description="1-based rank")
    id: int = Field(description="item id: the only way to address an item")
    path: str = Field(description="path relative to the indexed folder (root)")
    score: float = Field(description="cosine similarity of query and item (higher is better)")
    media_type: str = Field(description="image or video")
    start: Optional[float] = Field(None, description="video results: start of the matched segment, seconds")
    end: Optional[float] = Field(None, description="video results: end of the matched segment, seconds")
    thumbnail: str = Field(description="URL of a JPEG thumbnail")
    media: str = Field(description="URL of the file itself (supports HTTP Range)")


class SearchResponse(BaseModel):
    query: str = Field(description="the text query, or 'image upload'")
    model: str
    generation: int = Field(description="index generation the results come from")
    type: MediaFilter
    k: int
    results: list[ResultItem]


class ItemInfo(BaseModel):
    id: int
    path: str
    media_type: str
    width: Optional[int] = None
    height: Optional[int] = None
    size: int = Field(description="file size in bytes when indexed")
    mtime: float = Field(description="file modification time when indexed (Unix seconds)")
    sha256: str
    thumbnail: str
    media: str


class Health(BaseModel):
    status: str
    model: str
    items: int
    generation: int


class ErrorBody(BaseModel):
    error: str


_ERRORS = {c: {"model": ErrorBody} for c in (400, 404, 413, 415, 422)}


@dataclass
class ServeContext:
    settings: ServeSettings
    live: LiveIndex
    queries: QueryEncoder
    thumbs: ThumbnailCache
    metrics: Metrics
    rescorer: object = None  # VideoRescorer of an X-Pool / prototype index (encoder.video_rescorer())


def build_router(ctx: ServeContext) -> APIRouter:
    s, live, metrics = ctx.settings, ctx.live, ctx.metrics
    router = APIRouter()

    Q = Annotated[str, Query(min_length=1, max_length=s.max_query_chars, description="text query")]
    K = Annotated[int, Query(ge=1, le=s.max_k, description=f"number of results, 1..{s.max_k}")]
    T = Annotated[MediaFilter, Query(description="media type filter")]

    rescorer = ctx.rescorer

    def _search(vec_fn, k: int, media_type: str) -> tuple[Snapshot, list[dict]]:
        with metrics.stage("encode_query"):
            vec = vec_fn()
        with metrics.stage("search"):  # with a re-scoring head (X-Pool, prototypes): its candidate pool
            snap, hits = live.search(vec, k if rescorer is None else max(k, rescorer.candidates), media_type)
        with metrics.stage("rescore"):  # timed even when empty, so dashboards keep their shape
            if rescorer is not None:
                hits = live.rescore(snap, vec, hits, k, rescorer)
        return snap, [_result(r) for r in hits]

    def _result(r) -> dict:
        d = {"rank": r.rank, "id": r.id, "path": relative_path(r), "score": r.score, "media_type": r.media_type,
             "thumbnail": f"/api/items/{r.id}/thumbnail", "media": f"/api/items/{r.id}/media"}
        if r.start is not None:  # videos: the best-matching segment
            d["start"], d["end"] = r.start, r.end
        return d

    @router.get("/api/search", response_model=SearchResponse, response_model_exclude_none=True,
                responses=_ERRORS, tags=["search"], summary="Search with a text query")
    def search_text(q: Q, k: K = s.default_k, type: T = "all"):
        text = q.strip()
        if not text:
            raise HTTPException(422, "empty query")
        snap, results = _search(lambda: ctx.queries.encode_text(text), k, type)
        return {"query": text, "model": live.model_spec, "generation": snap.generation, "type": type, "k": k,
                "results": results}

    @router.post(
        "/api/search/image", response_model=SearchResponse, response_model_exclude_none=True, responses=_ERRORS,
        tags=["search"], summary="Search with an uploaded image",
        description=f"multipart/form-data with the image in field `file` (or a raw image/* body); at most "
                    f"{s.max_upload_bytes} bytes.",
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def search_image(request: Request, k: K = s.default_k, type: T = "all"):
        try:
            body = await read_body_limited(request, s.max_upload_bytes)
            data = extract_upload(body, request.headers.get("content-type", ""))
            image = await run_in_threadpool(decode_image, data, s.max_upload_bytes, s.max_upload_pixels)
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None
        snap, results = await run_in_threadpool(_search, lambda: ctx.queries.encode_image(image), k, type)
        return {"query": "image upload", "model": live.model_spec, "generation": snap.generation, "type": type,
                "k": k, "results": results}

    def _item(raw_id: str):
        item_id = parse_item_id(raw_id)
        rec = live.get_item(item_id) if item_id is not None else None
        if rec is None:
            raise HTTPException(404, "no such item")
        return rec

    @router.get("/api/items/{item_id}", response_model=ItemInfo, response_model_exclude_none=True,
                responses={404: {"model": ErrorBody}}, tags=["items"], summary="Metadata of one item")
    def item_info(item_id: str):
        rec = _item(item_id)
        return {"id": rec.id, "path": relative_path(rec), "media_type": rec.media_type, "width": rec.width,
                "height": rec.height, "size": rec.size, "mtime": rec.mtime, "sha256": rec.sha256,
                "thumbnail": f"/api/items/{rec.id}/thumbnail", "media": f"/api/items/{rec.id}/media"}

    @router.get("/api/items/{item_id}/thumbnail", response_class=Response, tags=["items"],
                responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorBody}},
                summary="JPEG thumbnail (images; the middle frame of videos)")
    def item_thumbnail(item_id: str):
        rec = _item(item_id)
        path = live.media_path(rec)
        if path is None:
            raise HTTPException(404, "the item's file is no longer available")
        try:
            data = ctx.thumbs.get(path, rec.media_type)
        except (XmrError, OSError, ValueError) as e:
            reason = "needs PyAV (xmr[video])" if isinstance(e, MissingExtraError) else "cannot be decoded"
            raise HTTPException(404, f"no thumbnail: the item's file {reason}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @router.get("/api/items/{item_id}/media", response_class=FileResponse, tags=["items"],
                summary="The item's file (also HEAD; HTTP Range requests give 206 Partial Content)",
                responses={200: {"content": {"image/*": {}, "video/*": {}}}, 206: {"description": "a byte range"},
                           404: {"model": ErrorBody}})
    def item_media(item_id: str):
        rec = _item(item_id)
        path = live.media_path(rec)
        if path is None:
            raise HTTPException(404, "the item's file is no longer available")
        mt = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=mt, headers={"Cache-Control": "private, max-age=60"})

    router.add_api_route("/api/items/{item_id}/media", item_media, methods=["HEAD"], include_in_schema=False)

    @router.get("/health", response_model=Health, tags=["service"], summary="Liveness and index state")
    def health():
        snap = live.snapshot()
        return {"status": "ok", "model": live.model_spec, "items": snap.count, "generation": snap.generation}

    @router.get("/metrics", response_class=PlainTextResponse, tags=["service"],
                summary="Prometheus metrics (text exposition format 0.0.4)")
    def prometheus():
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return router


__all__ = ["build_router", "ServeContext"]
