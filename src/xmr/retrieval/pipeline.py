"""One search path: query -> encode -> first stage -> moments -> head -> rescore -> rerank -> top k.

``xmr search``, ``xmr serve`` and the Python API all run :class:`Pipeline` (``xmr eval`` runs the same stages in
their dense form, :mod:`xmr.retrieval.dense`). Build one from typed options::

    from xmr.retrieval import Query, SearchOptions, build_pipeline
    pipe = build_pipeline(reader, encoder, SearchOptions(rescore=("qbnorm",), bank="bank.txt"))
    out = pipe.search(reader, Query.image("a.jpg"), k=10, media_type="video")
    out.results, out.stages

A combination that is not defined is refused with a ConfigError saying why: when the pipeline is built (an option
the index or encoder cannot honour) or when a query arrives (e.g. cross-encoder re-ranking of an image query).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from .first_stage import FirstStage, check_k, check_media_type
from .query import Query, encode_query
from .result import SearchOutcome, rank
from .stages.rescore import MODEL_DEFAULT, model_rescore_default
from .stages import (DEFAULT_CANDIDATES, ExpertStage, HeadStage, MomentStage, RecipeStage, RerankStage, RescoreStage,
                     Stage, StageContext)


@dataclass(frozen=True)
class SearchOptions:
    """Which stages run, and their parameters (``k`` and ``media_type`` are per search, see :meth:`Pipeline.search`).

    ``candidates``: first-stage pool handed to stages that re-order (default ``max(100, k)``; at least ``rerank_k``).
    ``rescore``: re-scorer names in order (``qbnorm``, ``dsl``, ``csls``), ``rescore_params`` per name, ``bank`` a
    querybank source (text file, dataset spec or a bundled bank's name); ``None`` (the default): the re-scoring the
    model recommends for text queries (``Encoder.rescore_default``: ``concept``'s QB-Norm with its bundled bank;
    nothing for other models); ``()``: none. ``rerank``: cross-encoder spec (``hf:DIR``, ``xattn:DIR``).
    ``head``: use the encoder's re-scoring head (X-Pool / prototypes) when it has one (default True).
    ``experts``: run the experts stage (:mod:`xmr.retrieval.stages.experts`): None no, ``()`` every expert the index
    carries, or the names; ``expert_fusion`` (vista, max, sum), ``expert_weights`` {name: weight}, ``phrase``.
    ``recipe_tower``: a trained hierarchical recipe tower's folder (:mod:`xmr.retrieval.stages.recipe`); not with
    the experts stage (it scores every item itself)."""

    candidates: int | None = None
    rescore: tuple[str, ...] | None = None
    rescore_params: dict = field(default_factory=dict)
    bank: str | None = None
    rerank: str | None = None
    rerank_k: int = 10
    rerank_alpha: float = 0.0
    head: bool = True
    device: str | None = None
    experts: tuple[str, ...] | None = None
    expert_fusion: str = "vista"
    expert_weights: dict = field(default_factory=dict)
    phrase: str | None = None
    recipe_tower: str | None = None

    def __post_init__(self):
        if self.candidates is not None:
            check_k(self.candidates, "candidates")
        if self.rescore is not None and not isinstance(self.rescore, tuple):
            object.__setattr__(self, "rescore", tuple(self.rescore))  # a list is accepted: frozen, so set here
        if self.bank and not self.rescore:
            raise ConfigError("a querybank (--bank) needs re-scoring (e.g. --rescore qbnorm)")
        if self.rescore is None and self.rescore_params:
            raise ConfigError("re-scoring parameters need the re-scorers named (e.g. --rescore qbnorm)")
        if self.rerank is None and (self.rerank_k != 10 or self.rerank_alpha != 0.0):
            raise ConfigError("--rerank-k and --rerank-alpha need --rerank SPEC")
        if self.recipe_tower is not None and (self.experts is not None or self.phrase):
            raise ConfigError("--recipe-tower scores every item with the tower; it does not combine with the experts "
                              "stage (--experts, --expert-fusion, --phrase): use one or the other")


class Pipeline:
    """Declared stages over one encoder; :meth:`search` runs them on any reader of an index built with it."""

    def __init__(self, encoder, stages: list[Stage], candidates: int | None = None):
        self.encoder = encoder
        self.stages = list(stages)
        self.candidates = candidates

    @property
    def reorders(self) -> bool:
        return any(s.changes_scores for s in self.stages)

    def depth(self, k: int) -> int:
        """First-stage depth for a top-``k`` search."""
        if not self.reorders:
            return k
        d = self.candidates if self.candidates is not None else max(DEFAULT_CANDIDATES, k)
        rr = [s.k for s in self.stages if isinstance(s, RerankStage)]
        return max(d, k, *rr)

    def check(self, reader, media_type: str | None) -> None:
        if reader.model_spec is not None and reader.model_spec != self.encoder.spec:
            raise ConfigError(f"index was built with {reader.model_spec!r} but the query encoder is "
                              f"{self.encoder.spec!r}")
        rdim = getattr(reader, "dim", None)
        if rdim is not None and int(rdim) != int(self.encoder.dim):
            raise ConfigError(f"the index holds {rdim}-d vectors but model {self.encoder.spec!r} now gives "
                              f"{self.encoder.dim}-d ones: the model changed since the index was built (e.g. xmr's "
                              f"default 'concept' went from 2000-d to 2384-d with its round-2 adapter). Rebuild the "
                              f"index: xmr index FOLDER --index NEW_PATH")
        for s in self.stages:
            s.check_index(reader, self.encoder, media_type)

    def search(self, reader, query: Query, k: int = 10, media_type: str | None = None,
               exclude: Sequence[int] = ()) -> SearchOutcome:
        """Top-``k`` results for ``query`` on ``reader`` (:class:`xmr.index.snapshot.IndexReader`); items in
        ``exclude`` (ids, e.g. a composed query's reference image) are left out and the next ones take their place."""
        k = check_k(k)
        want = check_media_type(media_type)
        self.check(reader, want)
        for s in self.stages:
            s.check_query(query)
        emb = encode_query(self.encoder, query)
        return self.search_embedded(reader, emb, k, want, exclude)

    def search_embedded(self, reader, emb, k: int, media_type: str | None,
                        exclude: Sequence[int] = ()) -> SearchOutcome:
        """:meth:`search` for an already encoded query (the server encodes concurrent queries in one batch)."""
        exclude = frozenset(int(i) for i in exclude)
        first = FirstStage(self.depth(k + len(exclude)), media_type)
        t0 = time.perf_counter()
        cands, hints = first.run(reader, emb)
        ctx = StageContext(reader, self.encoder, emb, hints, media_type)
        cands = rank(cands)
        seconds = {first.name: time.perf_counter() - t0}
        for s in self.stages:
            t0 = time.perf_counter()
            cands = s.run(ctx, cands)
            if not s.keeps_order:
                cands = rank(cands)
            if isinstance(s, MomentStage):
                cands = cands[: first.depth]  # the exact top-depth pool the re-ordering stages work on
            seconds[s.name] = time.perf_counter() - t0
        out = [c for c in cands if c.id not in exclude][:k] if exclude else cands[:k]
        for n, r in enumerate(out, 1):
            r.rank = n
        return SearchOutcome(out, emb.query.describe(), self.encoder.spec,
                             [first.params()] + [s.record_for(ctx) for s in self.stages], reader.generation, seconds)

    def describe(self) -> list[dict]:
        return [s.record() for s in self.stages]


def build_stages(encoder, options: SearchOptions) -> list[Stage]:
    """The stages ``options`` ask for, in :data:`~xmr.retrieval.stages.STAGE_ORDER`. Errors name the option."""
    stages: list[Stage] = [MomentStage()]
    if options.head and encoder.capabilities.video_rescoring:
        stages.append(HeadStage(encoder))
    if options.recipe_tower is not None:
        stages.append(RecipeStage(options.recipe_tower))
    if options.experts is not None or options.phrase:
        stages.append(ExpertStage(options.experts or None, options.expert_fusion, options.expert_weights,
                                  options.phrase))
    if options.rescore:
        stages.append(RescoreStage(options.rescore, options.rescore_params, options.bank))
    elif options.rescore is None and (rec := model_rescore_default(encoder)) is not None:
        stages.append(RescoreStage(rec.names, rec.params, rec.bank, origin=MODEL_DEFAULT, label=rec.label()))
    if options.rerank:
        stages.append(RerankStage(options.rerank, options.rerank_k, options.rerank_alpha, device=options.device))
    return stages


def build_pipeline(encoder, options: SearchOptions | None = None) -> Pipeline:
    """A :class:`Pipeline` for ``encoder`` with the stages of ``options``. ``candidates`` without a stage that
    re-orders is refused (it would change nothing)."""
    options = options or SearchOptions()
    stages = build_stages(encoder, options)
    pipe = Pipeline(encoder, stages, options.candidates)
    if options.candidates is not None and not pipe.reorders:
        raise ConfigError("--candidates only applies with --rescore, --rerank, or an index whose video head "
                          "re-scores (xpool, prototypes): this search ranks exactly without a candidate pool")
    return pipe


def search(reader, encoder, query: Query, k: int = 10, media_type: str | None = None,
           options: SearchOptions | None = None) -> SearchOutcome:
    """One-shot :meth:`Pipeline.search` (builds the stages each call; keep a :class:`Pipeline` for many)."""
    return build_pipeline(encoder, options).search(reader, query, k, media_type)


__all__ = ["SearchOptions", "Pipeline", "build_pipeline", "build_stages", "search"]
