"""What the FAISS backends share: an ``IndexIDMap2`` around an inner index, atomic save, memory-mapped load."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BackendConfig, VectorBackend


def _q(queries: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)


def empty_result(nq: int):
    return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)


class FaissBackend(VectorBackend):
    """A FAISS index (``self.index``, an ``IndexIDMap2``) saved as ``stem.faiss``."""

    index = None  # faiss.IndexIDMap2
    _mapped = False  # loaded with IO_FLAG_MMAP_IFC: the codes are a read-only view of the file

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def _own(self) -> None:
        """Copy a memory-mapped index into memory before it changes (FAISS aborts on resizing a mapped array)."""
        if self._mapped:
            import faiss

            # clone_index would keep the mapped view; a serialize round trip owns its memory
            self.index = faiss.deserialize_index(faiss.serialize_index(self.index))
            self._mapped = False
            self._after_load()

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids):
            self._own()
            self.index.add_with_ids(_q(vecs), np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._own()
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int):
        q = _q(queries)
        if self.ntotal == 0 or k < 1:
            return empty_result(len(q))
        return self.index.search(q, min(int(k), self.ntotal))

    def save(self, folder: Path, stem: str) -> None:
        import faiss

        tmp = folder / f".{stem}.faiss.{os.getpid()}.tmp"
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, folder / f"{stem}.faiss")

    @classmethod
    def load(cls, folder: Path, stem: str, dim: int, config: BackendConfig, tuned: dict, *, mmap: bool = False):
        import faiss

        path = folder / f"{stem}.faiss"
        if not path.exists():
            return None
        b = cls(dim, config)
        b.tuned = dict(tuned)
        b.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        b._mapped = mmap
        b._after_load()
        return b

    def _after_load(self) -> None:
        """Re-apply tuned search parameters (FAISS does not save efSearch / nprobe with the index)."""

    def copy(self):
        import faiss

        b = type(self)(self.dim, self.config)
        b.tuned = dict(self.tuned)
        # clone_index is a memory copy, but of a mapped index it keeps the read-only view: serialize that one
        b.index = faiss.deserialize_index(faiss.serialize_index(self.index)) if self._mapped else \
            faiss.clone_index(self.index)
        b._after_load()
        return b
