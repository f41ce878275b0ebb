"""JPEG thumbnails (images; the middle frame of videos), kept in a bounded in-memory LRU: fast on repeat, nothing
written to disk, gone on restart."""
from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

from PIL import Image, ImageOps

from ..errors import CorruptMediaError, MediaError, MediaTooLargeError, XmrError
from ..media.image import MAX_PIXELS


class ThumbnailCache:
    """Thumbnails keyed by (real path, size, mtime): a changed file gets a new thumbnail."""

    def __init__(self, max_side: int = 256, max_bytes: int = 64 * 1024 * 1024, max_decodes: int = 2) -> None:
        self.max_side = max_side
        self.max_bytes = max_bytes
        # decoding is CPU- and memory-heavy (a 100 MP image is 300 MB of pixels): at most this many at once
        self._decoding = threading.BoundedSemaphore(max_decodes)
        self._lru: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, path: Path, media_type: str = "image") -> bytes:
        """JPEG bytes of the thumbnail of the image (or video: its middle frame) at ``path``.

        Raises :class:`~xmr.errors.XmrError` (a MediaError, or MissingExtraError without PyAV for a video) or
        OSError when it cannot be made."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            data = self._lru.get(key)
            if data is not None:
                self._lru.move_to_end(key)
                self.hits += 1
                return data
        self.misses += 1
        with self._decoding:
            data = self._make(path, media_type)
        with self._lock:
            if key not in self._lru and len(data) <= self.max_bytes:
                self._lru[key] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    _, old = self._lru.popitem(last=False)
                    self._bytes -= len(old)
        return data

    def _make(self, path: Path, media_type: str) -> bytes:
        if media_type == "video":
            from PIL import Image

            from ..media.video import sample_frames

            im = Image.fromarray(sample_frames(path, 1, size=self.max_side)[0])  # the frame at mid-clip
        else:
            im = decode_for_thumbnail(path, self.max_side)
        im.thumbnail((self.max_side, self.max_side))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        return buf.getvalue()


def decode_for_thumbnail(path: Path, side: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image for a ``side``-pixel thumbnail, with the guards of :func:`xmr.media.image.load_image`
    (pixel limit, decompression bomb, full decode so truncation fails, EXIF orientation). JPEGs are decoded at a
    reduced scale (``Image.draft``, DCT scaling): a 12 MP photo costs a fraction of a full decode."""
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise MediaTooLargeError(path, f"{w}x{h} pixels is over the {max_pixels}-pixel limit")
                im.draft("RGB", (2 * side, 2 * side))  # no-op for formats other than JPEG
                im.load()
                return ImageOps.exif_transpose(im).convert("RGB")
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaTooLargeError(path, f"decompression bomb guard: {e}") from None
    except Image.UnidentifiedImageError:
        raise CorruptMediaError(path, "not a recognised image format") from None
    except (SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise CorruptMediaError(path, f"corrupt or truncated image ({e})") from None
    # OSError (missing, permission, truncated data) propagates: the route answers 404 for it too


__all__ = ["ThumbnailCache", "decode_for_thumbnail", "MediaError", "XmrError"]
