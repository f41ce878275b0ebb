"""Two-stage retrieval: a dual encoder proposes top-K candidates, a cross-encoder scores each (query, item) pair.

Score combination (:func:`combine_scores`): ``alpha * dual + (1 - alpha) * cross``; ``alpha = 0`` (default) ranks
the K candidates by the cross-encoder alone. Cross scores are match log-odds (``logit(match) - logit(no match)``
for a two-way ITM head; the single logit of a binary head), so they are unbounded, unlike cosine similarities:
choose ``alpha`` on a validation set. Items outside the top-K keep their dual-encoder order, below all candidates.
"""
from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError


class ImageFeatureCache:
    """A bounded LRU of per-image features (tensors) keyed by file path, size and mtime, so a cross-encoder that
    re-ranks many queries (a server; ``xmr eval --candidates``) encodes each candidate image once, not once per
    query. In-memory images (PIL) are never cached. ``max_bytes`` bounds the memory held."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = int(max_bytes)
        self._rows: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def _key(image):
        if not isinstance(image, (str, os.PathLike)):
            return None
        try:
            st = os.stat(image)
        except OSError:
            return None  # the encoder reports the unreadable file
        return (os.fspath(image), st.st_size, st.st_mtime_ns)

    def rows(self, images: Sequence, compute: Callable[[list], "object"]):
        """Features of ``images`` stacked in order (a torch tensor); ``compute(list of images)`` -> stacked
        features is called once for the ones not cached."""
        import torch

        keys = [self._key(im) for im in images]
        out: list = [None] * len(images)
        with self._lock:
            for j, k in enumerate(keys):
                if k is not None and k in self._rows:
                    self._rows.move_to_end(k)
                    out[j] = self._rows[k]
        todo = [j for j, r in enumerate(out) if r is None]
        self.hits += len(images) - len(todo)
        self.misses += len(todo)
        if todo:
            new = compute([images[j] for j in todo])
            with self._lock:
                for j, row in zip(todo, new):
                    out[j] = row
                    k = keys[j]
                    if k is not None and k not in self._rows:
                        self._rows[k] = row
                        self._bytes += row.element_size() * row.nelement()
                while self._bytes > self.max_bytes and self._rows:
                    _, old = self._rows.popitem(last=False)
                    self._bytes -= old.element_size() * old.nelement()
        return torch.stack(out) if out else compute([])


class CrossEncoder(ABC):
    """Scores (text, image) pairs jointly. ``score(texts, images, pairs)`` -> (P,) float32 match log-odds, where
    ``pairs[p] = (text index, image index)``; each distinct text and image is encoded once per call, and image
    features are kept across calls in :attr:`image_cache` (files only, bounded)."""

    spec: str = ""

    @property
    def image_cache(self) -> ImageFeatureCache:
        cache = self.__dict__.get("_image_cache")
        if cache is None:
            cache = self.__dict__["_image_cache"] = ImageFeatureCache()
        return cache

    @abstractmethod
    def score(self, texts: Sequence[str], images: Sequence, pairs: np.ndarray, batch_size: int = 64) -> np.ndarray:
        ...

    def describe(self) -> dict:
        return {"spec": self.spec, "class": type(self).__name__}


def check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"rerank alpha must be in [0, 1] (0 = cross-encoder only), got {alpha!r}")
    return a


def combine_scores(dual, cross, alpha: float = 0.0) -> np.ndarray:
    """``alpha * dual + (1 - alpha) * cross`` (float64)."""
    a = check_alpha(alpha)
    return a * np.asarray(dual, dtype=np.float64) + (1.0 - a) * np.asarray(cross, dtype=np.float64)


def rerank_candidates(scores, cols, cross, alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Re-order candidate lists: ``scores`` (Q, K) dual scores of columns ``cols`` (Q, K), ``cross`` (Q, K).
    Returns (combined scores, cols), each row sorted by decreasing combined score (ties keep the dual order)."""
    comb = combine_scores(scores, cross, alpha)
    order = np.argsort(-comb, axis=1, kind="stable")
    return np.take_along_axis(comb, order, 1), np.take_along_axis(np.asarray(cols), order, 1)


def topk_candidates(sims: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) column indices of each row's k best scores, best first (ties: lower column first)."""
    s = np.asarray(sims)
    k = min(int(k), s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(s.shape[1]), (len(s), 1))
    vals = np.take_along_axis(s, part, 1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, 1)


def rerank_dense(sims, texts: Sequence[str], images: Sequence, cross_encoder: CrossEncoder, k: int = 10,
                 alpha: float = 0.0, batch_size: int = 64) -> tuple[np.ndarray, dict]:
    """Two-stage t2i scores for a dense (Q, I) matrix: each row's top-``k`` get the combined score, lifted above
    every other item of the row (which keep their dual order). Returns (new (Q, I) float64 matrix, info) with
    ``info = {"k", "alpha", "pairs_scored", "cross_s"}``. ``sims`` is not modified."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"rerank k must be a positive integer, got {k!r}")
    alpha = check_alpha(alpha)
    s = np.asarray(sims, dtype=np.float64)
    if s.shape != (len(texts), len(images)):
        raise ConfigError(f"sims is {s.shape} but there are {len(texts)} texts and {len(images)} images")
    cols = topk_candidates(s, k)  # (Q, K)
    pairs = np.stack([np.repeat(np.arange(len(s)), cols.shape[1]), cols.ravel()], axis=1)
    t0 = time.perf_counter()
    cross = cross_encoder.score(texts, images, pairs, batch_size=batch_size).reshape(cols.shape)
    dt = time.perf_counter() - t0
    comb = combine_scores(np.take_along_axis(s, cols, 1), cross, alpha)
    out = s.copy()
    lift = s.max(axis=1) - comb.min(axis=1) + 1.0  # every candidate ends above every non-candidate
    np.put_along_axis(out, cols, comb + lift[:, None], axis=1)
    return out, {"k": int(cols.shape[1]), "alpha": alpha, "pairs_scored": int(pairs.shape[0]),
                 "cross_s": round(dt, 3)}
