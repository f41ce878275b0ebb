"""``ivf`` and ``ivfpq``: inverted-file FAISS indexes (Jégou, Douze & Schmid, TPAMI 2011), trained on a sample,
``nprobe`` tuned on held-out vectors for a target recall (:mod:`.tuning`), candidates re-ranked exactly.

* ``ivf``: ``IVF{nlist}_HNSW{M},Flat``: k-means cells over the full float32 vectors (IVF-Flat), with an HNSW graph
  over the centroids as the coarse quantizer (what FAISS's "Guidelines to choose an index" recommend from 1M vectors
  on: ``IVF65536_HNSW32``; the graph assigns queries and added rows to cells without comparing them with every
  centroid). A query visits its ``nprobe`` nearest cells and scores their vectors exactly, so only the candidate set
  is approximate (``exact_scores``) and re-ranking needs no deeper list. Choices where the guideline leaves room,
  or that depart from it:

  - ``nlist`` = 4·sqrt(n) rounded to a power of two (the low end of the guideline's 4–16·sqrt(N) for < 1M vectors;
    4,096 at 1M instead of its 65,536 from 1M on: 65,536 cells need 2M–16M training vectors, hours of k-means on one
    CPU core), at most training rows / 39;
  - training sample 39·nlist rows (FAISS's minimum without a warning; the guideline says 30–256·nlist), k-means
    with ``kmeans_iters`` = 10 iterations (FAISS's default is 25);
  - the HNSW quantizer's ``efSearch`` is ``max(64, 2·nprobe)`` (it must return ``nprobe`` cells).

* ``ivfpq``: ``IVF{nlist},PQ{m}x{nbits}``: vectors compressed to ``m`` bytes (``m = dim / 8`` codes of 8 bits by
  default: 64 bytes for 512-d against 2,048 for flat), exact flat coarse quantizer; the exact re-ranking of
  ``rerank_factor × k`` candidates from SQLite's float32 vectors restores the ranking (the paper's re-ranking uses
  a second, finer code; xmr uses the exact stored vectors).

Both keep row ids in the inverted lists themselves (no ``IndexIDMap2``): ``remove_ids`` on an ``IndexIDMap2``
around an IVF compacts the id map but not the ids stored in the lists, so every row after a removed one would be
reported under another row's id. An ``ivfpq`` file saved in that older layout is not loaded (rebuilt from SQLite).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...registries import VECTOR_BACKENDS
from .ann import AnnConfig, _Tuned
from .tuning import heldout_count

#: k-means wants at least this many training vectors per centroid (FAISS warns below it)
POINTS_PER_CENTROID = 39
NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def pow2_near(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(1.0, x))))


class _Ivf(_Tuned):
    """An ``IndexIVF`` searched and saved as it is (ids kept in its lists); tuned parameter ``nprobe``."""

    trains = True
    param_name = "nprobe"
    grid = NPROBE_GRID

    def _wrap(self, inner):
        return inner

    def _valid(self, v) -> bool:
        return v <= self.index.nlist

    def _set(self, v) -> None:
        self.index.nprobe = int(v)

    def ids(self) -> np.ndarray:
        import faiss

        inv = self.index.invlists
        out = []
        for cell in range(inv.nlist):
            m = inv.list_size(cell)
            if m:
                ptr = inv.get_ids(cell)
                out.append(faiss.rev_swig_ptr(ptr, m).copy())
                inv.release_ids(cell, ptr)
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    def _after_load(self) -> None:
        import faiss

        if isinstance(self.index, faiss.IndexIVF):  # else the IndexIDMap2 layout of xmr before 2026-12: see load
            super()._after_load()

    @classmethod
    def load(cls, folder, stem, dim, config, tuned, *, mmap=False):
        import faiss

        b = super().load(folder, stem, dim, config, tuned, mmap=mmap)
        if b is not None and not isinstance(b.index, faiss.IndexIVF):
            return None  # the IndexIDMap2 layout of xmr before 2026-12 (wrong ids after a removal): rebuilt
        return b


@dataclass
class IvfConfig(AnnConfig):
    nlist: int = 0  # inverted lists (k-means cells); 0: 4 sqrt(rows) rounded to a power of two, <= training rows / 39
    train_size: int = 0  # k-means sample; 0: 39 x nlist
    quantizer_M: int = 32  # degree of the HNSW graph over the centroids; 0: exact flat coarse quantizer
    kmeans_iters: int = 10

    LIMITS = {**AnnConfig.LIMITS, "nlist": (0, 1 << 20), "quantizer_M": (0, 256), "kmeans_iters": (1, 1000)}


@VECTOR_BACKENDS.register("ivf", help="FAISS IVF-Flat with an HNSW coarse quantizer, nprobe tuned; exact scores")
class IvfBackend(_Ivf):
    name = "ivf"
    Config = IvfConfig
    exact_scores = True  # the cells hold the full vectors: scores are exact, only the candidate set is not

    def _plan(self, n: int) -> tuple[int, int]:
        """(nlist, training rows to sample) for n rows."""
        cfg = self.config
        nlist = cfg.nlist or pow2_near(4 * math.sqrt(max(1, n)))
        rows = n - heldout_count(n, cfg.heldout)  # the held-out queries are never training rows
        if cfg.train_size:
            n_train = min(rows, cfg.train_size)
        else:  # 5 % over 39 x nlist: the sample is drawn row by row with that probability
            n_train = min(rows, math.ceil(POINTS_PER_CENTROID * nlist * 1.05))
        return max(1, min(nlist, n_train // POINTS_PER_CENTROID)), n_train

    def _train_rows(self, n: int) -> int:
        return self._plan(n)[1]

    def _make(self, n, n_train):
        nlist, _ = self._plan(n)
        q = f"_HNSW{self.config.quantizer_M}" if self.config.quantizer_M else ""
        return f"IVF{nlist}{q},Flat"

    def _configure(self, inner) -> None:
        inner.cp.niter = self.config.kmeans_iters

    def _set(self, v) -> None:
        import faiss

        super()._set(v)
        q = faiss.downcast_index(self.index.quantizer)
        if isinstance(q, faiss.IndexHNSW):
            q.hnsw.efSearch = max(64, 2 * int(v))


@dataclass
class IvfPqConfig(AnnConfig):
    rerank_factor: int = 10
    target_recall: float = 0.9
    code_bytes: int = 0  # PQ bytes per vector; 0: dim / 8 (a 32nd of flat's float32)
    nlist: int = 0  # inverted lists; 0: a power of two near sqrt(rows), at most training rows / 39
    pq_points_per_centroid: int = 64  # PQ k-means sample per centroid (FAISS default 256)

    LIMITS = {**AnnConfig.LIMITS, "code_bytes": (0, 4096), "nlist": (0, 1 << 20), "pq_points_per_centroid": (1, 1 << 16)}


@VECTOR_BACKENDS.register("ivfpq", help="FAISS IVF + product quantization (compressed), nprobe tuned; exact re-ranking")
class IvfPqBackend(_Ivf):
    name = "ivfpq"
    Config = IvfPqConfig

    def _make(self, n, n_train):
        cfg = self.config
        nlist = cfg.nlist or pow2_near(math.sqrt(max(1.0, n)))
        nlist = max(1, min(nlist, n_train // POINTS_PER_CENTROID or 1))
        m = cfg.code_bytes or max(1, self.dim // 8)
        while self.dim % m:  # PQ needs m to divide dim
            m -= 1
        nbits = max(1, min(8, int(math.log2(max(2, n_train // POINTS_PER_CENTROID)))))  # ~39 points per centroid
        return f"IVF{nlist},PQ{m}x{nbits}"

    def _configure(self, inner) -> None:
        # PQ codebooks: k-means of 2**nbits centroids per sub-vector on at most 64 points per centroid (16,384 for
        # 8 bits; FAISS' default is 256 per centroid). The PQ k-means are most of a build's time on a busy machine.
        inner.pq.cp.max_points_per_centroid = self.config.pq_points_per_centroid
