"""``binary``: Hamming search over sign codes (FAISS ``IndexBinaryFlat``), for hashing methods whose vectors are
±1 codes (issue 12).

Each stored float vector ``v`` is coded as the bits ``v > 0`` (``dim`` must be a multiple of 8; ``dim / 8``
bytes per vector). The backend's score is ``dim - 2 * hamming``, which is the inner product of the two ±1 codes,
so for vectors that are ±c codes it ranks exactly as the inner product does; for real-valued vectors it is an
approximation (sign hashing). Either way the first stage re-scores ``rerank_factor × k`` candidates exactly from
the stored float32 vectors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...registries import VECTOR_BACKENDS
from ._faiss import empty_result
from .base import BackendConfig, VectorBackend


def sign_codes(vecs: np.ndarray) -> np.ndarray:
    """(n, dim) floats -> (n, dim / 8) uint8 packed bits of ``v > 0`` (big-endian bit order, numpy's packbits)."""
    return np.ascontiguousarray(np.packbits(np.atleast_2d(vecs) > 0, axis=1))


@dataclass
class BinaryConfig(BackendConfig):
    rerank_factor: int = 10


@VECTOR_BACKENDS.register("binary", help="FAISS binary index, Hamming distance on sign codes (hash codes); exact re-ranking")
class BinaryBackend(VectorBackend):
    name = "binary"
    exact = False
    Config = BinaryConfig

    def __init__(self, dim, config=None):
        import faiss

        super().__init__(dim, config)
        if self.dim % 8:
            raise ConfigError(f"the binary backend needs a vector width that is a multiple of 8, got {self.dim}")
        self.index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(self.dim))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self):
        import faiss

        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids, vecs):
        if len(ids):
            self.index.add_with_ids(sign_codes(vecs), np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids):
        if len(ids):
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries, k):
        q = np.atleast_2d(queries)
        if self.ntotal == 0 or k < 1:
            return empty_result(len(q))
        ham, ids = self.index.search(sign_codes(q), min(int(k), self.ntotal))
        return (self.dim - 2 * ham).astype(np.float32), ids

    def save(self, folder: Path, stem: str) -> None:
        import faiss

        tmp = folder / f".{stem}.bfaiss.{os.getpid()}.tmp"
        faiss.write_index_binary(self.index, str(tmp))
        os.replace(tmp, folder / f"{stem}.bfaiss")

    @classmethod
    def load(cls, folder, stem, dim, config, tuned, *, mmap=False):
        import faiss

        path = folder / f"{stem}.bfaiss"
        if not path.exists():
            return None
        b = cls(dim, config)
        b.tuned = dict(tuned)
        b.index = faiss.read_index_binary(str(path))
        return b

    def copy(self):
        import faiss

        b = type(self)(self.dim, self.config)
        b.index = faiss.deserialize_index_binary(faiss.serialize_index_binary(self.index))
        return b
