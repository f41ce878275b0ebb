"""``milvus``: the vectors in a Milvus collection through pymilvus: embedded milvus-lite (a local file inside the
index folder, no server; the default) or a Milvus server / cluster (``milvus://HOST:PORT``).

The collection (``xmr_<table>`` for milvus-lite; ``xmr_<table>_<hash of the index folder>`` on a server, so two
indexes never share one) holds ``id`` (SQLite row id) and ``vector`` (float32) with the inner-product metric and
Milvus' default index. It is a live database, not a file: updates go straight into it, :meth:`copy` returns the
same connection, and a search sees the newest rows (the first stage drops rows that its snapshot does not hold).
The ids the collection holds are kept in ``<stem>.milvus-ids.npy`` next to the generation they reflect. Candidates
are re-ranked exactly from SQLite like every approximate backend. An unreachable server fails within ``timeout``
seconds with an :class:`~xmr.errors.XmrIndexError`. milvus-lite lets one process at a time open its file: with the
lite backend, ``xmr serve`` and ``xmr index`` cannot run on one index at the same time (the second says so); use a
server for that.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._deps import require
from ...errors import ConfigError, XmrIndexError
from ...registries import VECTOR_BACKENDS
from ._faiss import empty_result
from .base import BackendConfig, VectorBackend

MAX_LIMIT = 16384  # Milvus' cap on top-k per search
INSERT_BATCH = 5000


@dataclass
class MilvusConfig(BackendConfig):
    uri: str = ""  # "" : milvus-lite file <index>/vectors.milvus.db; "milvus://HOST:PORT": a server
    timeout: float = 5.0  # seconds to wait for the server before failing
    rerank_factor: int = 2


def server_uri(uri: str) -> str:
    """``milvus://HOST:PORT`` -> ``http://HOST:PORT`` (what pymilvus connects to); anything else: ConfigError."""
    rest = uri[len("milvus://"):]
    host, _, port = rest.partition(":")
    if not uri.startswith("milvus://") or not host or not port.isdigit():
        raise ConfigError(f"a Milvus server URI looks like milvus://HOST:PORT, got {uri!r}")
    return f"http://{host}:{port}"


@VECTOR_BACKENDS.register("milvus", help="Milvus via pymilvus: milvus-lite file in the index (default) or "
                                         "milvus://HOST:PORT; exact re-ranking")
class MilvusBackend(VectorBackend):
    name = "milvus"
    exact = False
    Config = MilvusConfig

    def __init__(self, dim, config=None):
        super().__init__(dim, config)
        self._client = None
        self._collection = ""
        self._ids = np.zeros(0, np.int64)
        self.folder: Path | None = None
        self.stem = ""

    # ---- connection -------------------------------------------------------------------------------------------
    def attach(self, folder: Path, stem: str) -> None:
        """Bind to the index folder: the milvus-lite file lives there; a server collection is named after it."""
        self.folder, self.stem = Path(folder), stem
        if self.config.uri:
            tag = hashlib.sha1(str(self.folder.resolve()).encode()).hexdigest()[:12]
            self._collection = f"xmr_{stem}_{tag}"
        else:
            self._collection = f"xmr_{stem}"

    def _where(self) -> str:
        if self.config.uri:
            return server_uri(self.config.uri)
        if self.folder is None:
            raise XmrIndexError("the milvus backend is not attached to an index folder")
        return str(self.folder / "vectors.milvus.db")

    def client(self):
        if self._client is None:
            pymilvus = require("pymilvus", "vectors", "pymilvus (and milvus-lite)")
            where = self._where()
            try:
                self._client = pymilvus.MilvusClient(uri=where, timeout=self.config.timeout)
            except Exception as e:  # pymilvus raises MilvusException / grpc errors with long messages
                if not self.config.uri:
                    raise XmrIndexError(
                        f"cannot open the milvus-lite file {where} ({str(e).splitlines()[0][:120]}); milvus-lite lets "
                        f"one process at a time open it: stop the other xmr (e.g. xmr serve) or use a Milvus server "
                        f"(--backend milvus://HOST:PORT)") from None
                raise XmrIndexError(f"cannot reach Milvus at {self.config.uri or where} within "
                                    f"{self.config.timeout:g} s: {str(e).splitlines()[0][:200]}") from None
            if not self._client.has_collection(self._collection):
                self._client.create_collection(self._collection, dimension=self.dim, metric_type="IP",
                                               id_type="int", auto_id=False, primary_field_name="id",
                                               vector_field_name="vector")
        return self._client

    # ---- contents ---------------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def ids(self):
        return self._ids.copy()

    def build(self, source, progress=None) -> None:
        c = self.client()
        c.drop_collection(self._collection)
        self._client = None  # recreated empty by client()
        self._ids = np.zeros(0, np.int64)
        super().build(source, progress)

    def add(self, ids, vecs):
        if not len(ids):
            return
        c = self.client()
        ids = np.asarray(ids, np.int64)
        vecs = np.asarray(vecs, np.float32)
        for s in range(0, len(ids), INSERT_BATCH):
            c.insert(self._collection, [{"id": int(i), "vector": v.tolist()}
                                        for i, v in zip(ids[s:s + INSERT_BATCH], vecs[s:s + INSERT_BATCH])])
        self._ids = np.concatenate([self._ids, ids])

    def remove(self, ids):
        if not len(ids):
            return
        ids = np.asarray(ids, np.int64)
        self.client().delete(self._collection, ids=[int(i) for i in ids])
        self._ids = self._ids[~np.isin(self._ids, ids)]

    def search(self, queries, k):
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if self.ntotal == 0 or k < 1:
            return empty_result(len(q))
        k = min(int(k), self.ntotal, MAX_LIMIT)
        res = self.client().search(self._collection, data=q.tolist(), limit=k, output_fields=[])
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for r, hits in enumerate(res):
            for j, h in enumerate(hits[:k]):
                ids[r, j], scores[r, j] = int(h["id"]), float(h["distance"])
        return scores, ids

    # ---- persistence ------------------------------------------------------------------------------------------
    def save(self, folder: Path, stem: str) -> None:
        if self._client is not None:
            self._client.flush(self._collection)
        tmp = folder / f".{stem}.milvus-ids.{os.getpid()}.npy"
        np.save(tmp, self._ids)
        os.replace(tmp, folder / f"{stem}.milvus-ids.npy")

    @classmethod
    def load(cls, folder, stem, dim, config, tuned, *, mmap=False):
        path = Path(folder) / f"{stem}.milvus-ids.npy"
        if not path.exists():
            return None
        b = cls(dim, config)
        b.attach(folder, stem)
        b.tuned = dict(tuned)
        b._ids = np.load(path)
        c = b.client()
        rows = int(c.get_collection_stats(b._collection).get("row_count", -1))
        if rows != len(b._ids):  # the collection and the id list disagree (e.g. a crash between them): rebuild
            return None
        return b

    def copy(self):
        return self  # a database: updated in place (see the module docstring)

    def describe(self) -> dict:
        d = super().describe()
        d["collection"] = self._collection
        return d

    def release(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
