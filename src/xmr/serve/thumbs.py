"""JPEG thumbnails (images; the middle frame of videos), kept in a bounded in-memory LRU: fast on repeat, nothing
written to disk, gone on restart."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from ..media.image import load_image


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
            im = load_image(path, draft=2 * self.max_side)  # same guards as indexing
        im.thumbnail((self.max_side, self.max_side))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        return buf.getvalue()


__all__ = ["ThumbnailCache"]
