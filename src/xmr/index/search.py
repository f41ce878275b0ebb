"""Query an index with text or an image."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..encoders.base import Encoder
from ..errors import ConfigError
from .store import IndexStore

MAX_K = 10_000


@dataclass
class SearchResult:
    rank: int  # 1-based
    id: int
    path: str
    score: float
    media_type: str
    root: str

    def to_dict(self) -> dict:
        return asdict(self)


def search_index(
    store: IndexStore,
    encoder: Encoder,
    *,
    text: str | None = None,
    image: str | os.PathLike | None = None,
    k: int = 10,
) -> list[SearchResult]:
    """Top-``k`` items for a text query or an image query (exactly one of the two)."""
    if (text is None) == (image is None):
        raise ConfigError("give exactly one of a text query or an image query")
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    if text is not None and not text.strip():
        raise ConfigError("empty text query")
    if store.model_spec is not None and store.model_spec != encoder.spec:
        raise ConfigError(f"index was built with {store.model_spec!r} but the query encoder is {encoder.spec!r}")
    q = encoder.encode_text([text]) if text is not None else encoder.encode_images([image])
    return results_from_ids(store, *store.search(q, k))


def results_from_ids(store: IndexStore, scores: np.ndarray, ids: np.ndarray) -> list[SearchResult]:
    recs = store.get_items([i for i in ids[0] if i >= 0])
    out = []
    for s, i in zip(scores[0], ids[0]):
        rec = recs.get(int(i))
        if rec is None:
            continue
        out.append(SearchResult(len(out) + 1, rec.id, rec.path, float(s), rec.media_type, rec.root))
    return out
