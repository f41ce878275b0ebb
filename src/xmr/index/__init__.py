"""The on-disk index (SQLite metadata + FAISS vectors), folder indexing, and the read-only snapshot search uses.

Search itself is :mod:`xmr.retrieval` (later in the data flow). The indexer and the video names load on first use:
a search opens a snapshot without importing the video decoding code."""
from .snapshot import IndexReader, IndexSnapshot, SnapshotReader, open_reader, open_snapshot
from .store import IndexStore

__all__ = ["IndexStore", "IndexReport", "index_folder", "IndexReader", "IndexSnapshot", "SnapshotReader",
           "open_reader", "open_snapshot", "VideoIndexConfig", "embed_video", "mean_pool"]

_MOVED = {"search_index": "xmr.retrieval.search_index", "search_vector": "xmr.retrieval.search_vector",
          "SearchResult": "xmr.retrieval.SearchResult"}


#: loaded on first access (``from xmr.index import index_folder`` works as before)
_LAZY = {"IndexReport": "xmr.index.indexer", "index_folder": "xmr.index.indexer", "VideoIndexConfig": "xmr.video",
         "embed_video": "xmr.video", "mean_pool": "xmr.video"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MOVED:  # search left the index package: one retrieval pipeline (xmr.retrieval) for every caller
        raise ImportError(f"xmr.index.{name} moved to {_MOVED[name]} (search is the one retrieval pipeline now: "
                             f"from xmr.retrieval import {name})")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
