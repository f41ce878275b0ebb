"""Hash, decode and preprocess the indexer's next files in worker threads while the model encodes this batch.

On a small CPU, decoding JPEGs and building the model's input views takes about as long as the model itself; both
release the GIL (libjpeg / PIL resizes / numpy, ONNX Runtime), so doing them in a few threads one batch ahead keeps
the cores busy. Workers touch files only: the index (SQLite, one connection, one thread) stays with the caller, which
decides per file whether to touch, skip or add it, exactly as before.

Memory: a worker decodes an image only after reserving its header's pixel count from a :class:`PixelBudget` shared
by all workers (the indexer's per-batch budget), and releases it once the image is turned into the model's input,
which is small and fixed per image (concept: 6 uint8 views of 224², 0.9 MB). Without a setup (model not loaded yet, or an
encoder without the split API) workers only hash, and the caller decodes as before.

A file's failures are results, never exceptions: ``Prepared.error`` is why an unreadable file is skipped,
``Prepared.media_error`` the MediaError of an image that does not decode.
"""
from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..errors import MediaError
from ..media.image import header_pixels, load_image, open_regular


@dataclass
class Prepared:
    """One file, as far as the workers (or the caller) took it."""

    digest: str | None = None  # sha256 of the content; None if the file could not be read
    error: str | None = None  # why it could not be read (skip reason)
    media_error: MediaError | None = None  # the image did not decode
    size: tuple[int, int] | None = None  # (width, height) of the full-size image (EXIF orientation applied)
    image: Any = None  # the decoded PIL image (decoded by the caller)
    model_input: Any = None  # encoder.preprocess_images([image])[0] (built by a worker)


def file_sha256(path: str, bufsize: int = 1 << 20) -> str:
    """SHA-256 of a regular file (MediaError for anything else: it is never read)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


class PixelBudget:
    """Decoded pixels the workers may hold at once. An image larger than the whole budget waits until nothing else
    is held, then takes all of it (one oversized image at a time, as the indexer's batches do)."""

    def __init__(self, total: int):
        self.total = max(1, int(total))
        self.used = 0
        self.peak = 0  # most pixels held at once (for tests)
        self._cv = threading.Condition()

    def acquire(self, n: int) -> int:
        n = min(max(0, int(n)), self.total)
        with self._cv:
            self._cv.wait_for(lambda: self.used + n <= self.total)
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    def release(self, n: int) -> None:
        with self._cv:
            self.used -= n
            self._cv.notify_all()


def prepare_file(path: str, is_image: bool, setup: dict | None,
                 hash_file: Callable[[str], str] = file_sha256) -> Prepared:
    """Hash ``path`` with ``hash_file``; for an image with a ``setup`` (``draft``, ``preprocess``, ``budget``) also
    decode it at the draft size within the budget and build its model input. Never raises for a bad file."""
    try:
        digest = hash_file(path)
    except MediaError as e:
        return Prepared(error=e.reason)
    except OSError as e:
        return Prepared(error=f"unreadable ({e.strerror or e})")
    if not is_image or setup is None:
        return Prepared(digest=digest)
    budget: PixelBudget = setup["budget"]
    held = budget.acquire(header_pixels(path) or 0)
    try:
        im = load_image(path, draft=setup["draft"])
        size = im.info.get("full_size", im.size)
        return Prepared(digest=digest, size=size, model_input=setup["preprocess"]([im])[0])
    except MediaError as e:
        return Prepared(digest=digest, media_error=e)
    finally:
        budget.release(held)


class Prefetcher:
    """``for batch, prepared in Prefetcher(batches, ...)``: each batch with one :class:`Prepared` per entry, the next
    ``ahead`` batches being prepared in ``workers`` threads meanwhile.

    ``entry(item) -> (path, is_image)``; ``setup()`` is called in the caller's thread when a batch is submitted and
    returns the decode setup for it (or None: hash only), so a model loaded meanwhile is used from then on."""

    def __init__(self, batches: Sequence[Sequence], entry: Callable[[Any], tuple[str, bool]],
                 setup: Callable[[], dict | None], workers: int = 2, ahead: int = 1,
                 hash_file: Callable[[str], str] = file_sha256):
        self.batches, self.entry, self.setup, self.hash_file = batches, entry, setup, hash_file
        self.workers, self.ahead = max(1, workers), max(0, ahead)

    def _submit(self, pool: ThreadPoolExecutor, batch) -> list[Future]:
        setup = self.setup()
        return [pool.submit(prepare_file, *self.entry(item), setup, self.hash_file) for item in batch]

    def __iter__(self) -> Iterator[tuple[Sequence, list[Prepared]]]:
        if not self.batches:
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="xmr-prefetch") as pool:
            pending = [self._submit(pool, b) for b in self.batches[: 1 + self.ahead]]
            try:
                for i, batch in enumerate(self.batches):
                    futs = pending.pop(0)
                    done = [f.result() for f in futs]
                    nxt = i + 1 + self.ahead
                    if nxt < len(self.batches):
                        pending.append(self._submit(pool, self.batches[nxt]))
                    yield batch, done
            finally:  # stopped early (Ctrl-C, an error): drop what has not started
                for futs in pending:
                    for f in futs:
                        f.cancel()
