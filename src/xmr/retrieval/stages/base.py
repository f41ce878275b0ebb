"""The stage interface: one step after the first stage, with its parameters recorded in every result."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from ..result import SearchResult


@dataclass
class StageContext:
    """What a stage may read while it runs on one query."""

    reader: object  # xmr.index.snapshot.IndexReader
    encoder: object  # xmr.encoders.Encoder (the index's model)
    emb: object  # xmr.retrieval.query.QueryEmbedding
    hints: dict = field(default_factory=dict)  # first stage: video id -> (best segment score, start, end)
    media_type: str | None = None  # the search's type filter (a stage that adds candidates keeps it)


class Stage(ABC):
    """A re-scoring / re-ranking / resolution step on a candidate list.

    Subclasses set ``name``, implement :meth:`params` and :meth:`run`, and refuse what they cannot do in
    :meth:`check_index` (once, when the pipeline is built) and :meth:`check_query` (per query) with a ConfigError
    that says why. ``changes_scores``: whether the stage can re-order candidates (a first stage then hands it a pool
    deeper than ``k``)."""

    name: ClassVar[str] = ""
    changes_scores: ClassVar[bool] = True
    keeps_order: ClassVar[bool] = False  # True: the pipeline keeps the returned order instead of sorting by score

    @abstractmethod
    def params(self) -> dict:
        """JSON-able parameters (recorded in results)."""

    def record(self) -> dict:
        return {"stage": self.name, **self.params()}

    def record_for(self, ctx: StageContext) -> dict:
        """What a result records about this stage for the query of ``ctx`` (default: :meth:`record`; a stage that
        skips some queries says so)."""
        return self.record()

    def check_index(self, reader, encoder, media_type: str | None) -> None:
        """Refuse an index / encoder / type filter this stage is not defined for."""

    def check_query(self, query) -> None:
        """Refuse a query this stage is not defined for."""

    @abstractmethod
    def run(self, ctx: StageContext, cands: list[SearchResult]) -> list[SearchResult]:
        """New scores (and start/end) for ``cands``; may re-order; never drops or adds candidates, except the
        ``experts`` stage (items found by their text; ``--phrase`` keeps only the items whose text holds it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"
