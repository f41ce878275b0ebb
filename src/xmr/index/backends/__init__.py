"""Vector backends: where an index's vectors are searched (registry :data:`~xmr.registries.VECTOR_BACKENDS`).

==========  =========================================================  =====  ======================================
name        what                                                       exact  module
==========  =========================================================  =====  ======================================
``flat``    FAISS ``IndexFlatIP`` (default)                            yes    :mod:`.flat`
``hnsw``    FAISS HNSW graph, ``efSearch`` tuned on held-out vectors   no     :mod:`.ann`
``ivf``     FAISS IVF-Flat, HNSW coarse quantizer, ``nprobe`` tuned    no     :mod:`.ivf`
``ivfpq``   FAISS IVF + PQ (compressed), ``nprobe`` tuned              no     :mod:`.ivf`
``binary``  FAISS binary index (Hamming on sign codes)                 no     :mod:`.binary`
``milvus``  Milvus through pymilvus (milvus-lite file or a server)     no     :mod:`.milvus`
==========  =========================================================  =====  ======================================

The interface is :class:`~.base.VectorBackend`; the store (:mod:`xmr.index.store`) builds, saves and updates a
backend, the first stage (:mod:`xmr.retrieval.first_stage`) searches it and re-ranks approximate candidates exactly.
``--backend`` takes ``NAME``, ``NAME:key=value,key=value`` (the backend's config fields, e.g.
``hnsw:target_recall=0.98``) or ``milvus://HOST:PORT``.
"""
from __future__ import annotations

import json

from ...errors import ConfigError
from ...registries import VECTOR_BACKENDS
from .base import BackendConfig, VectorBackend, exact_rerank

DEFAULT_BACKEND = "flat"


def _load_all() -> None:
    from ...registries import load_all

    load_all("vector_backend")


def backend_class(name: str) -> type[VectorBackend]:
    _load_all()
    return VECTOR_BACKENDS.get(name)


def parse_backend(spec: str) -> dict:
    """``--backend`` text -> ``{"name": ..., "config": {...}}`` (checked against the backend's config fields)."""
    spec = (spec or "").strip()
    if spec.startswith("milvus://"):
        from .milvus import server_uri

        server_uri(spec)  # checks the form
        name, config = "milvus", {"uri": spec}
    else:
        name, _, rest = spec.partition(":")
        config = {}
        for part in filter(None, rest.split(",")):
            key, eq, raw = part.partition("=")
            if not eq:
                raise ConfigError(f"--backend {spec!r}: options are key=value pairs, got {part!r}")
            try:
                config[key.strip()] = json.loads(raw)
            except ValueError:
                config[key.strip()] = raw
    cls = backend_class(name)
    cls.Config.from_dict(config)  # unknown keys and bad values fail here, before anything is built
    return {"name": name, "config": config}


def create_backend(record: dict | None, dim: int) -> VectorBackend:
    """A new, empty backend for a ``{"name", "config"}`` record (None: ``flat``)."""
    record = record or {"name": DEFAULT_BACKEND, "config": {}}
    cls = backend_class(record["name"])
    try:
        cfg = cls.Config.from_dict(record.get("config"))
    except TypeError as e:
        raise ConfigError(f"bad options for vector backend {record['name']!r}: {e}") from None
    return cls(dim, cfg)


__all__ = ["BackendConfig", "VectorBackend", "VECTOR_BACKENDS", "DEFAULT_BACKEND", "backend_class",
           "create_backend", "exact_rerank", "parse_backend"]
