"""REST routes. Every error is ``{"error": "..."}`` with a 4xx status (see ``app.py`` for the handlers).

Clients address media by integer item id only: no request parameter or path is ever joined to a filesystem path.
"""

import mimetypes
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Optional

import numpy as np

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, BeforeValidator, Field, StrictInt

from ..errors import ConfigError, MissingExtraError, XmrError
from ..retrieval import Pipeline, Term, encode_query
from ..retrieval import Query as RQuery
from .batcher import QueryEncoder
from .live import LiveIndex, parse_item_id, relative_path
from .metrics import CONTENT_TYPE, Metrics
from .settings import ServeSettings
from .thumbs import ThumbnailCache
from .uploads import PixelBudget, UploadError, decode_image, extract_upload, image_pixels, read_body_limited

MediaFilter = Literal["image", "video", "moment", "all"]


class ResultItem(BaseModel):
    rank: int = Field(description="1-based rank")
    id: int = Field(description="item id: the only way to address an item")
    path: str = Field(description="path relative to the indexed folder (root)")
    score: float = Field(description="cosine similarity of query and item (higher is better)")
    media_type: str = Field(description="image or video")
    start: Optional[float] = Field(None, description="video results: start of the matched segment, seconds")
    end: Optional[float] = Field(None, description="video results: end of the matched segment, seconds")
    match: Optional[str] = Field(None, description="indexes with experts: 'visual' or the expert that matched "
                                                   "(ocr, sidecar, subtitles)")
    experts: Optional[dict] = Field(None, description="indexes with experts: per expert, its best row's score, "
                                                      "text and field (and start/end of a timed row)")
    weights: Optional[dict[str, float]] = Field(None, description="a server with a trained expert fuser (xmr serve "
                                                "--expert-fusion laff:DIR / mmt:DIR): each source's weight in the "
                                                "fused score ('visual' and the item's experts)")
    thumbnail: str = Field(description="URL of a JPEG thumbnail")
    media: str = Field(description="URL of the file itself (supports HTTP Range)")


class SearchResponse(BaseModel):
    query: Any = Field(description="the text query; a list for several texts; 'image upload'; or the query's terms")
    model: str
    generation: int = Field(description="index generation the results come from")
    type: MediaFilter
    k: int
    stages: list[dict] = Field(description="every stage that produced the results, with its parameters")
    languages: Optional[list[dict]] = Field(None, description="per text term: the language whose text tower encoded "
                                            "it and how it was chosen (explicit / detected / default)")
    results: list[ResultItem]


class VectorQuery(BaseModel):
    vector: list[float] = Field(description="query vector of the index model's width (L2-normalised on arrival)",
                                min_length=1, max_length=65536)
    k: Optional[StrictInt] = Field(None, description="number of results (an integer: 1.0 is refused)")
    type: MediaFilter = "all"


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


_ERRORS = {c: {"model": ErrorBody} for c in (400, 404, 408, 413, 415, 422, 503)}


def _digits_only(v):
    """Query-string integers are written in decimal digits: ``k=1.0`` or ``k=1e1`` is a 422, not a 1 or a 10."""
    if isinstance(v, str) and not (v.isascii() and v.isdigit()):
        raise ValueError("must be an integer written in digits")
    return v


@dataclass
class ServeContext:
    settings: ServeSettings
    live: LiveIndex
    queries: QueryEncoder
    thumbs: ThumbnailCache
    metrics: Metrics
    pipeline: Pipeline  # the stages every search runs (xmr serve --rescore / --rerank / the index's video head)
    uploads: PixelBudget  # decoded pixels of image uploads in flight, all requests together
    composer: tuple[str, str] | None = None  # (name, folder) of the composer of image + text queries, if any
    moment_model: object | None = None  # the SQuiDNet that localises type=moment searches, if any
    #: set by build_router: ``await text_search(q, k, type, ...)`` -> the answer of GET /api/search (shared by the
    #: route and the fast path, xmr.serve.fast_search), and that route (its response model, its metrics label)
    text_search: Any = None
    text_route: Any = None


def build_router(ctx: ServeContext) -> APIRouter:
    s, live, metrics = ctx.settings, ctx.live, ctx.metrics
    router = APIRouter()

    K = Annotated[int, BeforeValidator(_digits_only), Query(ge=1, le=s.max_k,
                                                              description=f"number of results, 1..{s.max_k}")]
    T = Annotated[MediaFilter, Query(description="media type filter")]

    F = Annotated[str, Query(max_length=200, description="fusion of several terms: mean-sim, mean-emb, max")]
    NOT = Annotated[Optional[list[str]], Query(alias="not", max_length=8, description="negative text terms "
                                                                                   "(repeatable)")]

    def _search(query: RQuery, k: int, media_type: str, phrase: str | None = None,
                reference: str | None = None) -> dict:
        if str(query.fuse).startswith("learned"):
            raise HTTPException(422, "learned fusion loads a model from disk and is not offered by the server")
        if media_type == "moment":
            return _moment_search(query, k)
        pipe = ctx.pipeline
        try:
            if phrase:
                pipe = _with_phrase(pipe, phrase)
            with metrics.stage("encode_query"):
                reader = live.reader()
                pipe.check(reader, None if media_type == "all" else media_type)
                for st in pipe.stages:
                    st.check_query(query)
                emb = encode_query(_Batched(ctx.queries), query)
            _faiss_threads(s.faiss_threads)
            drop = reader.items_with_content(reference) if reference is not None else ()
            out = pipe.search_embedded(reader, emb, k, None if media_type == "all" else media_type, drop)
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        # "search": first stage + moments; "rescore": every later stage (timed even when empty: dashboards keep
        # their shape)
        sec = out.seconds
        metrics.observe_stage("search", sec.get("first-stage", 0.0) + sec.get("moments", 0.0))
        metrics.observe_stage("rescore", sum(v for n, v in sec.items() if n not in ("first-stage", "moments")))
        texts = [t.value for t in query.terms if t.kind == "text"]
        multi = len(ctx.queries.encoder.capabilities.languages) > 1  # a multilingual model says how it routed
        langs = None
        if texts and multi:  # the detected routing of a repeated text is remembered (QueryEncoder.text_languages)
            langs = (ctx.queries.text_languages(texts) if query.lang is None else
                     ctx.queries.encoder.text_languages(texts, query.lang))
        return {"query": out.query, "model": live.model_spec, "generation": out.generation, "type": media_type,
                "k": k, "stages": [_public_stage(st) for st in out.stages], "languages": langs,
                "results": [_result(r) for r in out.results]}

    def _moment_search(query: RQuery, k: int) -> dict:
        """type=moment: moments ranked across the indexed videos (the server's SQuiDNet, xmr serve --moment-model,
        else training-free localisation; docs/moments.md)."""
        from ..errors import XmrIndexError
        from ..retrieval.moment_search import check_has_videos, search_moments_embedded
        from ..video.clips import refuse_moments

        try:
            reader = live.reader()
            refuse_moments(ctx.queries.encoder, reader)  # a whole-clip index without windows: the CLI's reason
            check_has_videos(reader)
            with metrics.stage("encode_query"):
                emb = encode_query(_Batched(ctx.queries), query)
            _faiss_threads(s.faiss_threads)
            out = search_moments_embedded(reader, emb, k, model=ctx.moment_model, model_spec=live.model_spec)
        except (ConfigError, XmrIndexError) as e:
            raise HTTPException(422, str(e)) from None
        return {"query": out.query, "model": live.model_spec, "generation": out.generation, "type": "moment",
                "k": k, "stages": out.stages, "results": [_result(r) for r in out.results]}

    def _result(r) -> dict:
        d = {"rank": r.rank, "id": r.id, "path": relative_path(r), "score": r.score, "media_type": r.media_type,
             "thumbnail": f"/api/items/{r.id}/thumbnail", "media": f"/api/items/{r.id}/media"}
        if r.start is not None:  # videos: the best-matching segment
            d["start"], d["end"] = r.start, r.end
        if r.match is not None:  # the experts stage ran
            d["match"], d["experts"] = r.match, r.experts
        if r.weights is not None:  # a trained fuser: the weights it fused the sources with
            d["weights"] = r.weights
        return d

    async def text_search(q: list[str], k: int, type: str, fuse: str = "mean-sim", not_=None, phrase=None,
                          lang=None) -> dict:
        """The text search of ``GET /api/search`` once FastAPI has parsed its parameters (also called by the fast
        path for plain ``q`` / ``k`` / ``type`` requests, :mod:`xmr.serve.fast_search`): checks on the event loop,
        the search on a worker thread."""
        texts = [t.strip() for t in q]
        if any(not t for t in texts) or any(len(t) > s.max_query_chars for t in texts + list(not_ or [])):
            raise HTTPException(422, "empty query" if any(not t for t in texts) else
                                f"a query is longer than {s.max_query_chars} characters")
        try:
            query = RQuery.texts(texts, fuse=fuse, negatives=[n.strip() for n in not_ or [] if n.strip()])
            if lang is not None:
                query = replace(query, lang=ctx.queries.encoder.check_language(lang))
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        phrase = phrase.strip() if phrase and phrase.strip() else None
        if phrase is None and len(texts) == 1 and any(st.name == "experts" for st in ctx.pipeline.stages):
            import re

            quoted = re.findall(r'"([^"]+)"', texts[0])  # as `xmr search '"EXIT" sign'`: the quoted part is a phrase
            phrase = quoted[0] if quoted else None
        return await run_in_threadpool(_search, query, k, type, phrase)

    ctx.text_search = text_search

    @router.get("/api/search", response_model=SearchResponse, response_model_exclude_none=True,
                responses=_ERRORS, tags=["search"], summary="Search with a text query")
    async def search_text(q: Annotated[list[str], Query(min_length=1, max_length=8, description="text query; repeat "
                                                        "for several texts describing one target")],
                          k: K = s.default_k, type: T = "all", fuse: F = "mean-sim", not_: NOT = None,
                          phrase: Annotated[Optional[str], Query(
                              max_length=200, description="indexes with experts: only items whose expert text holds "
                                                          "this phrase")] = None,
                          lang: Annotated[Optional[str], Query(
                              max_length=8, description="language of the text (en, or one the model acquired); "
                                                        "default: detected")] = None):
        return await text_search(q, k, type, fuse, not_, phrase, lang)

    ctx.text_route = next(r for r in router.routes if r.path == "/api/search" and "GET" in r.methods)

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
    async def search_image(request: Request, k: K = s.default_k, type: T = "all",
                           text: Annotated[Optional[list[str]], Query(max_length=8, description="texts that modify "
                                                                       "the image (composed query)")] = None,
                           fuse: F = "mean-sim", not_: NOT = None,
                           compose: Annotated[Optional[Literal["learned", "fusion"]], Query(
                               description="image + text: 'learned' (the server's composer, xmr serve --composer; "
                                           "the default when it has one) or 'fusion' (training-free mean)")] = None,
                           keep_reference: Annotated[bool, Query(description="image + text: keep the uploaded "
                                                                 "image's own indexed copy (same content) in the "
                                                                 "results; by default it is left out")] = False):
        texts = _modification_texts(text, compose)
        if any(len(t) > s.max_query_chars for t in texts + list(not_ or [])):
            raise HTTPException(422, f"a query is longer than {s.max_query_chars} characters")
        try:
            body = await read_body_limited(request, s.max_upload_bytes, s.upload_timeout_s)
            data = extract_upload(body, request.headers.get("content-type", ""))
            del body
            return await run_in_threadpool(_image_search, data, k, type, texts, not_, fuse,
                                           _composer_for(texts, compose, not_, fuse), keep_reference)
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None

    def _image_search(data: bytes, k: int, media_type: str, texts: list[str], not_, fuse: str,
                      composer: str | None = None, keep_reference: bool = False) -> dict:
        """Decode (within the pixel budget, held until the search is done) and search. A composed query (image +
        text) leaves out the indexed items with the upload's content (its reference) unless ``keep_reference``."""
        import hashlib

        reference = hashlib.sha256(data).hexdigest() if texts and not keep_reference else None
        with ctx.uploads.hold(image_pixels(data, s.max_upload_bytes, s.max_upload_pixels)):
            image = decode_image(data, s.max_upload_bytes, s.max_upload_pixels)
            try:
                query = RQuery((Term("image", image), *(Term("text", t) for t in texts),
                               *(Term("text", n.strip(), -1.0) for n in not_ or [] if n.strip())), fuse, composer)
            except ConfigError as e:
                raise HTTPException(422, str(e)) from None
            res = _search(query, k, media_type, reference=reference)
            if len(query.terms) == 1:
                res["query"] = "image upload"
            elif composer is not None:  # the server's folder stays private: the composer's name only
                res["query"] = {"image": "image upload", "text": texts, "composer": ctx.composer[0]}
            del image, query
        return res

    # ---- composed queries (image + modification text): which composer, and the text checks
    def _modification_texts(text, compose) -> list[str]:
        """The modification texts of an image search; an empty one is refused (422), not silently dropped."""
        if text is not None and any(not t.strip() for t in text):
            raise HTTPException(422, "empty modification text: say what to change in the image (e.g. 'in red'), "
                                     "or leave out the text parameter to search with the image alone")
        texts = [t.strip() for t in text or []]
        if compose is not None and not texts:
            raise HTTPException(422, "compose needs a modification text (text=...)")
        return texts

    def _composer_for(texts, compose, not_, fuse) -> str | None:
        """The composer folder for this image search, or None for the training-free fusion."""
        if not texts or compose == "fusion" or (compose is None and ctx.composer is None):
            return None
        if ctx.composer is None:
            raise HTTPException(422, "compose=learned: this server has no composer (start it with xmr serve "
                                     "--composer DIR), or use compose=fusion")
        if compose is None and (not_ or fuse != "mean-sim"):
            return None  # negative terms / other fusions are defined for the fusion only
        return ctx.composer[1]

    @router.post("/api/search/vector", response_model=SearchResponse, response_model_exclude_none=True,
                 responses=_ERRORS, tags=["search"], summary="Search with a raw query vector (JSON body)")
    def search_vector(body: VectorQuery):
        k = s.default_k if body.k is None else body.k
        if not 1 <= k <= s.max_k:
            raise HTTPException(422, f"k: must be 1..{s.max_k}")
        v = np.asarray(body.vector, dtype=np.float32)
        if v.shape != (live.dim,) or not np.isfinite(v).all() or not np.linalg.norm(v) > 0:
            raise HTTPException(422, f"vector: must be {live.dim} finite numbers, not all zero")
        return _search(RQuery.vector(v), k, body.type)

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
        try:
            path = live.media_file(rec)
        except LookupError as e:
            raise HTTPException(404, str(e)) from None
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
        try:
            path = live.media_file(rec)
        except LookupError as e:
            raise HTTPException(404, str(e)) from None
        mt = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=mt, headers={"Cache-Control": "private, max-age=60"})

    router.add_api_route("/api/items/{item_id}/media", item_media, methods=["HEAD"], include_in_schema=False)

    from .interactive_api import add_interactive_routes  # Ask&Confirm, relevance feedback (docs/interactive.md)

    add_interactive_routes(router, ctx, _search)

    @router.get("/health", response_model=Health, tags=["service"], summary="Liveness and index state")
    def health():
        snap = live.snapshot()
        return {"status": "ok", "model": live.model_spec, "items": snap.count, "generation": snap.generation}

    @router.get("/metrics", response_class=PlainTextResponse, tags=["service"],
                summary="Prometheus metrics (text exposition format 0.0.4)")
    def prometheus():
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return router


def _with_phrase(pipe, phrase: str):
    """``pipe`` with its experts stage (added when missing) keeping only items whose expert text holds ``phrase``."""
    from ..retrieval import Pipeline
    from ..retrieval.stages import ExpertStage

    stages, done = [], False
    for st in pipe.stages:
        if isinstance(st, ExpertStage):
            st, done = ExpertStage(st.experts, st.fusion, st.weights, phrase, st.pool, fuser=st.fuser), True
        stages.append(st)
    if not done:
        stages.insert(1, ExpertStage(phrase=phrase))
    return Pipeline(pipe.encoder, stages, pipe.candidates)


def _public_stage(record: dict) -> dict:
    """A stage's record as a client sees it: a trained fuser by its name, not the server's folder (as a composer)."""
    if record.get("stage") == "experts" and ":" in str(record.get("fusion", "")):
        return {**record, "fusion": str(record["fusion"]).partition(":")[0]}
    if record.get("stage") == "recipe":
        return {**record, "tower": "the server's recipe tower"}
    return record


def _faiss_threads(n: int | None) -> None:
    """OpenMP threads for FAISS calls made by *this* request thread (``omp_set_num_threads`` sets the calling
    thread's own setting, so other threads and later processes are untouched). Concurrent requests are the server's
    parallelism; one query over a small index split across 2 OpenMP threads waits on a barrier that cost 35-50 ms
    per search on the loaded 2-core VM, vs 0.05 ms on one thread."""
    if n:
        import faiss

        faiss.omp_set_num_threads(n)


class _Batched:
    """The query encoder as :func:`xmr.retrieval.encode_query` sees it: texts and images go through the server's
    batcher one by one (concurrent requests share forward passes)."""

    def __init__(self, queries: QueryEncoder):
        enc = queries.encoder
        self._q, self.dim, self.spec, self.capabilities, self.require = queries, enc.dim, enc.spec, \
            enc.capabilities, enc.require

    def encode_text(self, texts, lang=None):
        if lang is not None:  # an explicit language: encoded directly (the batcher's cache holds detected-language
            return self._q.encoder.encode_text(list(texts), lang=lang)  # vectors, keyed by text alone)
        return np.stack([self._q.encode_text(t) for t in texts])

    def encode_images(self, images, show_progress=None):
        return np.stack([self._q.encode_image(im) for im in images])


__all__ = ["build_router", "ServeContext"]
