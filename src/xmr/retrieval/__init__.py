"""One retrieval pipeline: every query kind, every stage, the same path in ``xmr search``, ``xmr serve`` and
``xmr eval``.

* :mod:`~xmr.retrieval.query` -- :class:`Query` (text, several texts, image, image + modifying text, raw vector,
  weighted positive / negative terms) and its :class:`QueryEmbedding`;
* :mod:`~xmr.retrieval.first_stage` -- candidate generation over an index snapshot (exact flat inner product);
* :mod:`~xmr.retrieval.stages` -- moments, head re-scoring (X-Pool, prototypes), re-scoring (QB-Norm, DSL, CSLS),
  cross-encoder re-ranking; registry ``STAGES``;
* :mod:`~xmr.retrieval.pipeline` -- :class:`SearchOptions`, :func:`build_pipeline`, :class:`Pipeline`;
* :mod:`~xmr.retrieval.dense` -- the same stages on a dense (queries x gallery) matrix, for evaluation;
* :mod:`~xmr.retrieval.querybank` -- querybanks against an index's vectors.
"""
from __future__ import annotations

from .first_stage import MAX_K, MEDIA_TYPES, FirstStage
from .pipeline import Pipeline, SearchOptions, build_pipeline, build_stages, search
from .query import Query, QueryEmbedding, Term, encode_query
from .result import SearchOutcome, SearchResult
from .stages import STAGE_ORDER, STAGES, MomentStage, Stage


def search_index(store, encoder, *, text: str | None = None, image=None, k: int = 10,
                 media_type: str | None = None, candidates: int | None = None) -> list[SearchResult]:
    """Top-``k`` results of a text or image query (exactly one) on an open :class:`~xmr.index.IndexStore` (or any
    :class:`~xmr.index.snapshot.IndexReader`), through the default pipeline of ``encoder``."""
    from ..errors import ConfigError
    from ..index import IndexStore
    from ..index.snapshot import open_snapshot

    if (text is None) == (image is None):
        raise ConfigError("give exactly one of a text query or an image query")
    reader = open_snapshot(store).reader(store) if isinstance(store, IndexStore) else store
    query = Query.text(text) if text is not None else Query.image(image)
    pipe = build_pipeline(encoder, SearchOptions(candidates=candidates))
    return pipe.search(reader, query, k, media_type).results


__all__ = ["Query", "Term", "QueryEmbedding", "encode_query", "SearchOptions", "Pipeline", "build_pipeline",
           "build_stages", "search", "search_index", "SearchOutcome", "SearchResult", "FirstStage", "STAGES",
           "STAGE_ORDER", "Stage", "MAX_K", "MEDIA_TYPES"]


def search_vector(store, vector, k: int = 10, *, media_type: str | None = None) -> list[SearchResult]:
    """Top-``k`` results for one L2-normalised query vector ``(dim,)`` by the stored vectors alone (first stage and
    moments; no head re-scoring): the first stage of any search, exposed for tests and tools."""
    from ..index import IndexStore
    from ..index.snapshot import open_snapshot

    reader = open_snapshot(store).reader(store) if isinstance(store, IndexStore) else store
    pipe = Pipeline(_VectorOnly(reader), [MomentStage()])
    return pipe.search(reader, Query.vector(vector), k, media_type).results


class _VectorOnly:
    """The minimal encoder a vector query needs: its width and the index's spec (nothing is encoded)."""

    def __init__(self, reader):
        from ..encoders.base import Capabilities

        self.spec, self.dim, self.capabilities = reader.model_spec, reader.dim, Capabilities(text=False, images=False)


__all__ += ["search_vector"]
