"""Uploaded image queries: bounded body reading, in-memory multipart parsing, safe decoding.

Nothing is spooled to disk: the body (at most ``max_upload_bytes``) is read into memory and parsed there.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps


class UploadError(Exception):
    """A client error about an upload: ``status`` (400/413/415/422) and a message for the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body_limited(request, limit: int) -> bytes:
    """The request body, or :class:`UploadError` 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit + 64 * 1024:  # multipart framing adds a little to the file itself
                raise UploadError(413, f"upload too large: {declared} bytes, the limit is {limit} bytes")
        except ValueError:
            raise UploadError(400, "bad Content-Length header") from None
    buf = bytearray()
    async for chunk in request.stream():
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
    except Exception as e:  # python-multipart raises its own error classes for malformed bodies
        raise UploadError(400, f"malformed multipart body ({type(e).__name__})") from None
    for headers, data in parts:
        _, dparams = parse_options_header(headers.get(b"content-disposition", b""))
        if dparams.get(b"name") == field_name.encode():
            return data
    raise UploadError(422, f"multipart body has no '{field_name}' field with the image")


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Fully decode an uploaded image to RGB (EXIF orientation applied), or raise :class:`UploadError`."""
    if not data:
        raise UploadError(400, "empty upload")
    if len(data) > max_bytes:
        raise UploadError(413, f"upload too large: {len(data)} bytes, the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UploadError(413, f"image is {w}x{h} pixels, over the {max_pixels}-pixel limit")
                im.load()  # full decode: a truncated upload fails here
                return ImageOps.exif_transpose(im).convert("RGB")
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(413, "image is over the pixel limit (decompression bomb guard)") from None
    except Image.UnidentifiedImageError:
        raise UploadError(400, "the upload is not an image in a recognised format") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UploadError(400, "the uploaded image is truncated or corrupt") from None
    except MemoryError:
        raise UploadError(413, "the uploaded image is too large to decode") from None
