"""Query encoding for a multi-threaded server.

One worker thread owns the encoder: model forward passes never run concurrently (tokenizers and some models are
not thread-safe, and on a small CPU concurrent forwards only fight for cores). Text queries that arrive while the
worker is busy are encoded together in the next batch (each distinct text once), so throughput grows with load
instead of latency. Text embeddings are kept in an LRU :class:`~xmr.serve.query_cache.QueryCache`: a repeated query
skips the queue altogether.
"""
from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np

from ..encoders.base import Encoder
from .query_cache import QueryCache

_STOP = object()


class QueryEncoder:
    """Thread-safe front of an :class:`Encoder`: ``encode_text(str)`` / ``encode_image(PIL)`` -> (dim,) float32."""

    def __init__(self, encoder: Encoder, max_batch: int = 32, cache_size: int = 1024) -> None:
        self.encoder = encoder
        self.max_batch = max(1, int(max_batch))
        self.cache = QueryCache(cache_size)
        self._inflight: dict[str, Future] = {}  # text -> the future of its encoding in progress
        self._q: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # number of forward passes made (for tests and metrics)
        # text -> the encoder's language routing of it (a multilingual model detects the language of every text;
        # a repeated query reuses the answer): same size as the query cache, LRU
        self._langs: OrderedDict[str, dict] = OrderedDict()
        self._langs_lock = threading.Lock()

    def encode_text(self, text: str) -> np.ndarray:
        """(dim,) read-only float32 embedding of ``text`` (from the cache, or encoded in the next batch)."""
        hit = self.cache.get(self.encoder.spec, text)
        if hit is not None:
            return hit
        with self._start_lock:  # the same text already on its way: wait for that one (one encoding per text)
            fut = self._inflight.get(text)
            owner = fut is None
            if owner:
                hit = self.cache.peek(self.encoder.spec, text)  # finished between the first look and now
                if hit is not None:
                    return hit
                fut = self._inflight[text] = Future()
        if not owner:
            return fut.result()
        try:
            vec = self.cache.put(self.encoder.spec, text, self._submit("text", text))
            fut.set_result(vec)
            return vec
        except BaseException as e:
            fut.set_exception(e)
            raise
        finally:
            with self._start_lock:
                self._inflight.pop(text, None)

    def text_languages(self, texts: list[str]) -> list[dict]:
        """``encoder.text_languages(texts)`` (detected languages, no explicit one), each text's answer remembered
        (LRU of ``cache_size`` texts): the detection is a function of the text, so a repeated query skips it."""
        size = self.cache.maxsize
        with self._langs_lock:
            got = [self._langs.get(t) for t in texts]
            for t, d in zip(texts, got):
                if d is not None:
                    self._langs.move_to_end(t)
        missing = list(dict.fromkeys(t for t, d in zip(texts, got) if d is None))
        if missing:
            new = dict(zip(missing, self.encoder.text_languages(missing)))
            got = [d if d is not None else new[t] for t, d in zip(texts, got)]
            if size:
                with self._langs_lock:
                    self._langs.update(new)
                    while len(self._langs) > size:
                        self._langs.popitem(last=False)
        return [dict(d) for d in got]  # copies: the caller owns its answer

    def encode_image(self, image) -> np.ndarray:
        return self._submit("image", image)

    def _submit(self, kind: str, payload) -> np.ndarray:
        self._ensure_worker()
        fut: Future = Future()
        self._q.put((kind, payload, fut))
        return fut.result()

    def _ensure_worker(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="xmr-query-encoder", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is _STOP:
                return
            texts, images = [], []
            (texts if job[0] == "text" else images).append(job)
            while len(texts) < self.max_batch:  # whatever else is already waiting
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._q.put(_STOP)
                    break
                (texts if nxt[0] == "text" else images).append(nxt)
            if texts:
                self._do(texts, self._encode_unique)
            for job in images:  # uploads are rare and large: one at a time
                self._do([job], lambda xs: self.encoder.encode_images(xs, batch_size=1, show_progress=False))

    def _encode_unique(self, texts: list[str]) -> np.ndarray:
        """Each distinct text of a batch encoded once (16 clients asking the same thing: one row, not 16)."""
        uniq = list(dict.fromkeys(texts))
        vecs = self.encoder.encode_text(uniq, batch_size=self.max_batch, show_progress=False)
        row = {t: i for i, t in enumerate(uniq)}
        return vecs[[row[t] for t in texts]]

    def _do(self, jobs, fn) -> None:
        self.batches += 1
        try:
            vecs = fn([j[1] for j in jobs])
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request, which reports it
            for j in jobs:
                j[2].set_exception(e)
            return
        for j, v in zip(jobs, vecs):
            j[2].set_result(np.asarray(v, dtype=np.float32))

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None
