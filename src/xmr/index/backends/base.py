"""The interface every vector backend implements, and the exact re-ranking that approximate ones share.

A backend holds one table's vectors (``items`` or ``segments``) under their SQLite row ids and answers top-k
inner-product searches. SQLite stays the source of truth: a backend is a cache that :class:`~xmr.index.IndexStore`
builds from it, saves next to it with the generation it reflects, and brings up to date by adding/removing only the
rows that changed since (see ``IndexStore.vector_delta``).

Exact backends (``exact = True``) return exact inner products. Approximate ones return a candidate list of
``candidates(k)`` rows ranked by their own (approximate) score; the first stage re-scores those candidates exactly
from the stored float32 vectors (:func:`exact_rerank`) and keeps the top k, recorded in the search's ``stages``.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Protocol

import numpy as np

from ...errors import ConfigError


class VectorSource(Protocol):
    """Where a backend is built from: the store's rows (or any other iterable of vectors, e.g. in a benchmark)."""

    def count(self) -> int: ...
    def iter_vectors(self, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...
    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # (ids found, their float32 vectors)


@dataclass
class BackendConfig:
    """Options every backend understands (subclasses add their own)."""

    rerank_factor: int = 1  # approximate backends: candidates fetched per wanted result, re-scored exactly

    @classmethod
    def from_dict(cls, d: dict | None) -> "BackendConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for this vector backend; "
                              f"known: {', '.join(sorted(known))}")
        from ...config import check_values

        check_values(cls, d)  # types and the class's LIMITS: a bad value fails before anything is built
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class VectorBackend(ABC):
    """One table's vectors behind a top-k inner-product search (see the module docstring)."""

    name: ClassVar[str]
    exact: ClassVar[bool]  # scores and ranking are exact inner products over every row (no re-ranking needed)
    exact_scores: ClassVar[bool] = False  # the scores of returned rows are exact (only the candidate set is not)
    trains: ClassVar[bool] = False  # build() trains on a sample
    Config: ClassVar[type[BackendConfig]] = BackendConfig

    def __init__(self, dim: int, config: BackendConfig | None = None):
        self.dim = int(dim)
        self.config = config if config is not None else self.Config()
        self.tuned: dict = {}  # what build() chose and measured (parameters, recall on held-out vectors)

    # ---- contents ---------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def ntotal(self) -> int: ...

    @abstractmethod
    def ids(self) -> np.ndarray:
        """int64 ids of every vector held (any order)."""

    @abstractmethod
    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Add rows (ids not already held; callers remove an updated row first)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None: ...

    def build(self, source: VectorSource, progress: Callable[[str], None] | None = None) -> None:
        """Fill from every vector of ``source`` (approximate backends also train and tune here)."""
        for ids, vecs in source.iter_vectors(chunk=65536):
            self.add(ids, vecs)

    # ---- search -----------------------------------------------------------------------------------------------
    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k'), ids (q, k')) with k' = min(k, ntotal); missing slots have id -1."""

    def candidates(self, k: int) -> int:
        """How many rows to fetch for an exact top-``k`` after re-ranking (``k`` for exact backends)."""
        return k if self.exact else k * self.rerank_factor()

    def rerank_factor(self) -> int:
        """Candidates per wanted result: the tuned value when tuning chose one, else the config's."""
        return max(1, int(self.tuned.get("rerank_factor", self.config.rerank_factor)))

    def vectors(self, ids: np.ndarray) -> np.ndarray | None:
        """Exact stored vectors of ``ids`` when this backend holds them (flat), else None (read them from SQLite)."""
        return None

    # ---- persistence ------------------------------------------------------------------------------------------
    @abstractmethod
    def save(self, folder: Path, stem: str) -> None:
        """Write this backend's files as ``folder/stem.*``, each atomically (temp file + rename)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, stem: str, dim: int, config: BackendConfig, tuned: dict, *,
             mmap: bool = False) -> "VectorBackend | None":
        """The backend saved by :meth:`save`, or None when its files are missing. ``mmap``: map the vectors
        read-only instead of reading them (the backend copies them into memory before its first update)."""

    @abstractmethod
    def copy(self) -> "VectorBackend":
        """An independent copy that can be updated while this one keeps serving searches."""

    def describe(self) -> dict:
        """Name, options and tuned parameters: what ``xmr info`` shows and the search records."""
        return {"name": self.name, "exact": self.exact, **self.config.to_dict(), **self.tuned}

    def attach(self, folder: Path, stem: str) -> None:
        """Bind a new backend to its index folder before :meth:`build` (milvus keeps its database there); nothing
        for backends that only write files in :meth:`save`."""

    def release(self) -> None:
        """Close connections (milvus); nothing for in-process indexes."""


def exact_rerank(queries: np.ndarray, ids: np.ndarray, fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate ``ids`` (q, c) of ``queries`` (q, d) exactly and keep the top ``k`` per row (ties: lower
    id first). ``fetch(ids) -> (found ids, their stored vectors)`` may leave out ids that no longer exist. Rows with
    fewer candidates are padded with score -inf and id -1."""
    q = np.atleast_2d(queries).astype(np.float32, copy=False)
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    ids = np.asarray(ids, np.int64)
    pool = np.unique(ids[ids >= 0])
    if not len(pool):
        return out_s, out_i
    have, vecs = fetch(pool)  # one lookup for every row's candidates
    have = np.asarray(have, np.int64)
    order0 = np.argsort(have, kind="stable")
    have, vecs = have[order0], vecs[order0]
    if not len(have):
        return out_s, out_i
    for r in range(len(q)):
        cand = np.unique(ids[r][ids[r] >= 0])  # sorted: ties keep the lower id first below
        pos = np.minimum(np.searchsorted(have, cand), len(have) - 1)
        ok = have[pos] == cand  # rows deleted since the backend was built are dropped
        cand, pos = cand[ok], pos[ok]
        if not len(cand):
            continue
        s = vecs[pos] @ q[r]
        order = np.argsort(-s, kind="stable")[:k]
        out_s[r, : len(order)], out_i[r, : len(order)] = s[order], cand[order]
    return out_s, out_i


def write_json_atomic(path: Path, data: dict) -> None:
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class ArraySource:
    """A :class:`VectorSource` over in-memory (or memory-mapped) arrays: ``ids`` (n,) ascending, ``vecs`` (n, d)."""

    def __init__(self, ids: np.ndarray, vecs: np.ndarray):
        self._ids = np.asarray(ids, np.int64)
        self._vecs = vecs

    def count(self) -> int:
        return len(self._ids)

    def iter_vectors(self, chunk: int = 4096):
        for s in range(0, len(self._ids), chunk):
            yield self._ids[s:s + chunk], np.ascontiguousarray(self._vecs[s:s + chunk], np.float32)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        pos = np.minimum(np.searchsorted(self._ids, ids), max(0, len(self._ids) - 1))
        ok = self._ids[pos] == ids if len(self._ids) else np.zeros(len(ids), bool)
        return ids[ok], np.ascontiguousarray(self._vecs[pos[ok]], np.float32)
