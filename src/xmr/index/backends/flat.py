"""``flat``: exact inner-product search, ``IndexIDMap2(IndexFlatIP(dim))`` (the default; xmr's only index before
backends). Holds the float32 vectors, so it also serves them back exactly (:meth:`vectors`)."""
from __future__ import annotations

import numpy as np

from ...registries import VECTOR_BACKENDS
from ._faiss import FaissBackend


@VECTOR_BACKENDS.register("flat", help="exact inner product (FAISS IndexFlatIP); the default")
class FlatBackend(FaissBackend):
    name = "flat"
    exact = True
    exact_scores = True

    def __init__(self, dim, config=None):
        import faiss

        super().__init__(dim, config)
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
