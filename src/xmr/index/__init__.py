"""The on-disk index (SQLite metadata + FAISS vectors), folder indexing and search."""
from ..video import VideoIndexConfig, embed_video, mean_pool  # re-exported for users: they live in xmr.video
from .indexer import IndexReport, index_folder
from .search import SearchResult, search_index, search_vector
from .store import IndexStore

__all__ = ["IndexStore", "IndexReport", "index_folder", "SearchResult", "search_index", "search_vector",
           "VideoIndexConfig", "embed_video", "mean_pool"]
