"""Uploaded image queries: bounded body reading, in-memory multipart parsing, safe decoding.

Nothing is spooled to disk: the body (at most ``max_upload_bytes``) is read into memory, within a deadline, and
parsed there (at most :data:`MAX_PARTS` multipart parts). Decoded pixels are rationed by a :class:`PixelBudget`
shared by all requests: the image's size is read from its header, that many pixels are reserved (waiting for
others to finish, or 503 after a while) before it is decoded, and given back when the search is done. So however
many clients upload at once and whatever their images declare, the server holds at most the budget's pixels of
decoded uploads.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
import warnings

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

#: multipart parts an upload may have (the form has one: ``file``; a little room for clients that add fields)
MAX_PARTS = 16


class UploadError(Exception):
    """A client error about an upload: ``status`` (400/413/415/422) and a message for the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body_limited(request, limit: int, timeout: float | None = None) -> bytes:
    """The request body, or :class:`UploadError`: 413 as soon as it exceeds ``limit`` bytes, 408 when it has not
    all arrived within ``timeout`` seconds (a client that sends half a body and waits), 400 when the client goes
    away (one log line, no traceback)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit + 64 * 1024:  # multipart framing adds a little to the file itself
                raise UploadError(413, f"upload too large: {declared} bytes, the limit is {limit} bytes")
        except ValueError:
            raise UploadError(400, "bad Content-Length header") from None
    from starlette.requests import ClientDisconnect

    buf = bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks = request.stream().__aiter__()
    while True:
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = await asyncio.wait_for(chunks.__anext__(), left)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise UploadError(408, f"upload not complete after {timeout:g} s ({len(buf)} bytes received)") from None
        except ClientDisconnect:
            log.info("client disconnected during an upload (%d bytes received)", len(buf))
            raise UploadError(400, "client disconnected during the upload") from None
        buf += chunk
        if len(buf) > limit + 64 * 1024:
            raise UploadError(413, f"upload too large: over {limit} bytes")
    return bytes(buf)


def extract_upload(body: bytes, content_type: str, field_name: str = "file") -> bytes:
    """The bytes of the uploaded image: the ``file`` part of a multipart/form-data body, or a raw ``image/*`` body."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type or "")
    ctype = ctype.decode("latin-1").lower()
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return body
    if ctype != "multipart/form-data":
        raise UploadError(415, "send the image as multipart/form-data (field 'file') or as a raw image/* body")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart body without a boundary")

    parts: list[tuple[dict[bytes, bytes], bytes]] = []
    state: dict = {}

    def on_part_begin():
        if len(parts) >= MAX_PARTS:
            raise UploadError(413, f"multipart body has more than {MAX_PARTS} parts")
        state.update(headers={}, field=[], value=[], data=[])

    def on_header_field(data, start, end):
        state["field"].append(data[start:end])

    def on_header_value(data, start, end):
        state["value"].append(data[start:end])

    def on_header_end():
        state["headers"][b"".join(state["field"]).lower()] = b"".join(state["value"])
        state["field"], state["value"] = [], []

    def on_part_data(data, start, end):
        state["data"].append(data[start:end])

    def on_part_end():
        parts.append((state["headers"], b"".join(state["data"])))

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field, on_header_value=on_header_value,
                     on_header_end=on_header_end, on_part_data=on_part_data, on_part_end=on_part_end)
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as e:  # python-multipart raises its own error classes for malformed bodies
        raise UploadError(400, f"malformed multipart body ({type(e).__name__})") from None
    for headers, data in parts:
        _, dparams = parse_options_header(headers.get(b"content-disposition", b""))
        if dparams.get(b"name") == field_name.encode():
            return data
    raise UploadError(422, f"multipart body has no '{field_name}' field with the image")


class PixelBudget:
    """Decoded pixels all uploads together may hold at once. :meth:`hold` reserves an image's pixels (known from
    its header) before it is decoded and gives them back on exit; a request that cannot get them within
    ``wait_s`` seconds gets a 503. An image needing more than the whole budget is refused by the per-image limit
    first (the budget is at least ``max_upload_pixels``)."""

    def __init__(self, total: int, wait_s: float = 30.0) -> None:
        self.total = total
        self.wait_s = wait_s
        self.held = 0
        self.peak = 0  # most pixels ever held at once (tests, /metrics)
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int):
        pixels = min(int(pixels), self.total)
        with self._cond:
            if not self._cond.wait_for(lambda: self.held + pixels <= self.total, timeout=self.wait_s):
                raise UploadError(503, "server busy decoding other uploads: try again shortly")
            self.held += pixels
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._cond:
                self.held -= pixels
                self._cond.notify_all()


def _check_size(data: bytes, max_bytes: int) -> None:
    if not data:
        raise UploadError(400, "empty upload")
    if len(data) > max_bytes:
        raise UploadError(413, f"upload too large: {len(data)} bytes, the limit is {max_bytes} bytes")


def image_pixels(data: bytes, max_bytes: int, max_pixels: int) -> int:
    """Width x height of an uploaded image read from its header (nothing decoded), or :class:`UploadError`."""
    _check_size(data, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels is the limit applied
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise UploadError(413, f"image is over the {max_pixels}-pixel limit") from None
    except Image.UnidentifiedImageError:
        raise UploadError(400, "the upload is not an image in a recognised format") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UploadError(400, "the uploaded image is truncated or corrupt") from None
    if w * h > max_pixels:
        raise UploadError(413, f"image is {w}x{h} pixels, over the {max_pixels}-pixel limit")
    return w * h


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Fully decode an uploaded image to RGB (EXIF orientation applied), or raise :class:`UploadError`."""
    _check_size(data, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning (max_pixels applies) and EXIF chatter
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UploadError(413, f"image is {w}x{h} pixels, over the {max_pixels}-pixel limit")
                im.load()  # full decode: a truncated upload fails here
                return ImageOps.exif_transpose(im).convert("RGB")
    except UploadError:
        raise
    except Image.DecompressionBombError:
        raise UploadError(413, "image is over the pixel limit (decompression bomb guard)") from None
    except Image.UnidentifiedImageError:
        raise UploadError(400, "the upload is not an image in a recognised format") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UploadError(400, "the uploaded image is truncated or corrupt") from None
    except MemoryError:
        raise UploadError(413, "the uploaded image is too large to decode") from None


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (``mallopt(M_ARENA_MAX, n)``; what ``MALLOC_ARENA_MAX=n`` does).

    Each thread that decodes an upload otherwise gets its own arena, and the pixels freed there stay in the
    process: 16 uploads of 39 MP decoded one or two at a time (within the pixel budget) still left RSS at 2.9 GB,
    3.8 GB without the budget; with 2 arenas, 1.07 GB (benchmarks/hostile_memory.py). Called by ``xmr serve`` for
    its own process (a process-wide setting: never at import). Returns False where malloc is not glibc's."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(-8, int(n)))  # M_ARENA_MAX = -8 in glibc's malloc.h
    except (OSError, AttributeError):
        return False
