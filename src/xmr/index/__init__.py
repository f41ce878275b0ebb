"""The on-disk index (SQLite metadata + FAISS vectors), folder indexing, and the read-only snapshot search uses.

Search itself is :mod:`xmr.retrieval` (later in the data flow)."""
from ..video import VideoIndexConfig, embed_video, mean_pool  # re-exported for users: they live in xmr.video
from .indexer import IndexReport, index_folder
from .snapshot import IndexReader, IndexSnapshot, SnapshotReader, open_reader, open_snapshot
from .store import IndexStore

__all__ = ["IndexStore", "IndexReport", "index_folder", "IndexReader", "IndexSnapshot", "SnapshotReader",
           "open_reader", "open_snapshot", "VideoIndexConfig", "embed_video", "mean_pool"]
