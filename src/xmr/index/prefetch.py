"""Read, hash, decode and preprocess the indexer's next files in worker threads while the model encodes this batch.

On a small CPU, decoding JPEGs and building the model's input views takes about as long as the model itself; both
release the GIL (libjpeg / PIL resizes / numpy, ONNX Runtime), so doing them in a few threads one batch ahead keeps
the cores busy. Workers touch files only: the index (SQLite, one connection, one thread) stays with the caller, which
decides per file whether to touch, skip or add it, exactly as before.

A file's failures are results, never exceptions: ``Prepared.error`` holds the reason an unreadable file is skipped,
``Prepared.media_error`` the MediaError of an image that does not decode.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..errors import MediaError
from ..media.image import load_image


@dataclass
class Prepared:
    """One file, as far as the workers could take it."""

    digest: str | None = None  # sha256 of the content; None if the file could not be read
    error: str | None = None  # why it could not be read (skip reason)
    media_error: MediaError | None = None  # the image did not decode
    size: tuple[int, int] | None = None  # (width, height) of the full-size image
    image: Any = None  # the decoded PIL image (when no preprocessing function was given)
    pixels: Any = None  # preprocess([image])[0]: the model's input for this image


def file_sha256(path: str, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def prepare_file(path: str, is_image: bool, draft: int | None, preprocess: Callable | None) -> Prepared:
    """Hash ``path``; for an image also decode it (JPEG draft scale ``draft``) and, with ``preprocess``, build its
    model input. Never raises for a bad file."""
    try:
        digest = file_sha256(path)
    except OSError as e:
        return Prepared(error=f"unreadable ({e.strerror or e})")
    if not is_image:
        return Prepared(digest=digest)
    try:
        im = load_image(path, draft=draft)
    except MediaError as e:
        return Prepared(digest=digest, media_error=e)
    size = im.info.get("full_size", im.size)
    if preprocess is None:
        return Prepared(digest=digest, size=size, image=im)
    return Prepared(digest=digest, size=size, pixels=preprocess([im])[0])


class Prefetcher:
    """``for batch, prepared in Prefetcher(batches, ...)``: each batch with one :class:`Prepared` per entry, the next
    ``ahead`` batches being prepared in ``workers`` threads meanwhile.

    ``entry(item) -> (path, is_image)``; ``setup()`` is called in the caller's thread before each batch is submitted
    and returns ``(draft, preprocess)`` for it (so a model loaded meanwhile is used from then on)."""

    def __init__(self, batches: Sequence[Sequence], entry: Callable[[Any], tuple[str, bool]],
                 setup: Callable[[], tuple[int | None, Callable | None]], workers: int = 2, ahead: int = 1):
        self.batches, self.entry, self.setup = batches, entry, setup
        self.workers, self.ahead = max(1, workers), max(0, ahead)

    def _submit(self, pool: ThreadPoolExecutor, batch) -> list[Future]:
        draft, preprocess = self.setup()
        return [pool.submit(prepare_file, *self.entry(item), draft, preprocess) for item in batch]

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
