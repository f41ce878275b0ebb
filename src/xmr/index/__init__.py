"""The on-disk index (SQLite metadata + FAISS vectors), folder indexing and search."""
from .indexer import IndexReport, index_folder
from .search import SearchResult, search_index, search_vector
from .store import IndexStore
from .video import VideoIndexConfig, embed_video, mean_pool

__all__ = ["IndexStore", "IndexReport", "index_folder", "SearchResult", "search_index", "search_vector",
           "VideoIndexConfig", "embed_video", "mean_pool"]
