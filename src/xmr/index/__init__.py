"""The on-disk index (SQLite metadata + FAISS vectors), folder indexing and search."""
from .indexer import IndexReport, index_folder
from .search import SearchResult, search_index
from .store import IndexStore

__all__ = ["IndexStore", "IndexReport", "index_folder", "SearchResult", "search_index"]
