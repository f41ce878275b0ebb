"""The approximate FAISS backends' shared build (``faiss.index_factory``, trained on a sample and tuned on held-out
vectors for a target recall, :mod:`.tuning`; candidates re-ranked exactly) and ``hnsw``; the inverted-file backends
``ivf`` and ``ivfpq`` are in :mod:`.ivf`.

* ``hnsw``: ``HNSW{M},Flat`` (Malkov & Yashunin 2018): a graph over the full vectors; tuned parameter ``efSearch``.
  HNSW cannot delete, so a removed row is a tombstone (a position filtered out of every search with an
  ``IDSelector``); updates add the new vector and tombstone the old one. Tombstones are saved with the index.
* ``ivf`` / ``ivfpq``: see :mod:`.ivf`.

Rows added after the build go through the trained quantizers with the tuned parameters: nothing is re-trained or
re-tuned as the index grows or changes, and HNSW tombstones are never compacted. A rebuild (new sample, new
tuning) happens when the backend or its options change (``xmr index --backend ivfpq:seed=1``) or when
``vectors.json`` is removed. Paper: HNSW, Malkov & Yashunin, TPAMI 2018.
"""
from __future__ import annotations

from abc import abstractmethod

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...registries import VECTOR_BACKENDS
from ._faiss import FaissBackend, _q, empty_result
from .base import BackendConfig
from .tuning import build_tuned


@dataclass
class AnnConfig(BackendConfig):
    target_recall: float = 0.95  # recall@tune_k after exact re-ranking, measured on held-out vectors
    tune_k: int = 10
    heldout: int = 1000  # held-out query vectors (at most a tenth of the rows)
    train_size: int = 40_000  # training sample (IVF / PQ codebooks; PQ k-means is the slow part of a build)
    seed: int = 0

    LIMITS = {"target_recall": (0.0, 1.0), "tune_k": (1, 10_000), "heldout": (0, 1_000_000),
              "train_size": (0, 2**31 - 1), "rerank_factor": (1, 10_000)}


class _Tuned(FaissBackend):
    exact = False
    param_name = ""
    grid: tuple = ()
    factory = ""

    @abstractmethod
    def _make(self, n: int, n_train: int) -> str:
        """The ``index_factory`` string for n vectors trained on n_train."""

    def build(self, source, progress=None) -> None:
        import faiss

        n = int(source.count())
        n_train = min(n, self._train_rows(n))
        self.factory = self._make(n, n_train)
        inner = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)  # typed, owns the index
        self._configure(inner)
        self.index = self._wrap(inner)
        build_tuned(self, source, train=lambda x: inner.train(x) if not inner.is_trained else None,
                    grid=[v for v in self.grid if self._valid(v)], set_param=self._set, progress=progress,
                    train_size=n_train)

    def _train_rows(self, n: int) -> int:
        """Training rows to sample from n."""
        return self.config.train_size

    def _wrap(self, inner):
        """The index searched and saved: the inner index behind an ``IndexIDMap2`` (row ids), unless the inner
        index keeps ids itself (IVF)."""
        import faiss

        return faiss.IndexIDMap2(inner)

    def _valid(self, v) -> bool:
        return True

    def _configure(self, inner) -> None:
        """Training options of the freshly made index (before train)."""

    def _set(self, v) -> None:
        import faiss

        faiss.ParameterSpace().set_index_parameter(self.index, self.param_name, v)

    def _after_load(self) -> None:
        self.factory = self.tuned.get("factory", self.factory)
        if self.param_name in self.tuned:
            self._set(self.tuned[self.param_name])


@dataclass
class HnswConfig(AnnConfig):
    M: int = 32  # graph degree
    ef_construction: int = 40

    LIMITS = {**AnnConfig.LIMITS, "M": (2, 1024), "ef_construction": (1, 1_000_000)}


@VECTOR_BACKENDS.register("hnsw", help="FAISS HNSW graph, efSearch tuned for a target recall; exact re-ranking")
class HnswBackend(_Tuned):
    name = "hnsw"
    Config = HnswConfig
    exact_scores = True  # HNSW{M},Flat scores candidates with the full vectors
    param_name = "efSearch"
    grid = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)

    def __init__(self, dim, config=None):
        super().__init__(dim, config)
        self.dead = np.zeros(0, np.int64)  # tombstoned positions (HNSW cannot delete)

    def _make(self, n, n_train):
        return f"HNSW{self.config.M},Flat"

    def build(self, source, progress=None):
        import faiss

        self.factory = self._make(0, 0)
        inner = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = self.config.ef_construction
        self.index = faiss.IndexIDMap2(inner)
        build_tuned(self, source, train=lambda x: None, grid=list(self.grid), set_param=self._set,
                    progress=progress)

    def _positions(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) - len(self.dead)

    def ids(self) -> np.ndarray:
        pos = self._positions()
        if len(self.dead):
            pos = np.delete(pos, self.dead)
        return pos

    def remove(self, ids) -> None:
        if not len(ids):
            return
        idmap = self._positions()
        hit = np.nonzero(np.isin(idmap, np.asarray(ids, np.int64)))[0]
        self.dead = np.union1d(self.dead, hit).astype(np.int64)

    def search(self, queries, k):
        import faiss

        q = _q(queries)
        if self.ntotal == 0 or k < 1:
            return empty_result(len(q))
        k = min(int(k), self.ntotal)
        inner = faiss.downcast_index(self.index.index)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(inner.hnsw.efSearch), k)
        if len(self.dead):
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.dead))
            params.sel = sel
        d, p = inner.search(q, k, params=params)
        idmap = self._positions()
        return d, np.where(p >= 0, idmap[np.maximum(p, 0)], -1)

    def save(self, folder: Path, stem: str) -> None:
        super().save(folder, stem)
        tmp = folder / f".{stem}.dead.{os.getpid()}.npy"
        np.save(tmp, self.dead)
        os.replace(tmp, folder / f"{stem}.dead.npy")

    @classmethod
    def load(cls, folder, stem, dim, config, tuned, *, mmap=False):
        b = super().load(folder, stem, dim, config, tuned, mmap=mmap)
        if b is not None:
            dead = folder / f"{stem}.dead.npy"
            b.dead = np.load(dead) if dead.exists() else np.zeros(0, np.int64)
        return b

    def copy(self):
        b = super().copy()
        b.dead = self.dead.copy()
        return b
