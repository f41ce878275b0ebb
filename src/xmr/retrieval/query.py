"""Queries: text, several texts, an image, an image plus modifying text, a raw vector, weighted positive and
negative terms -- one :class:`Query` type, encoded once into a :class:`QueryEmbedding` that every stage scores with.

A query is a list of :class:`Term` (kind ``text`` / ``image`` / ``vector``, a value, a weight; a negative weight
is a negative term) and a fusion rule (:data:`xmr.multiquery.FUSIONS`):

* ``mean-sim`` (default): ``score(x) = sum_i w_i cos(e_i, x) / sum_{w_i > 0} w_i`` -- one vector
  ``v = sum_i w_i e_i / sum_{w_i>0} w_i`` searched once (linear, so exact with one inner-product search). With one
  term of weight 1 this is the plain cosine similarity.
* ``mean-emb``: cosine similarity to ``normalize(sum_i w_i e_i)`` (same ranking as ``mean-sim``, other scores).
* ``max``: ``max_i cos(e_i, x)`` over positive terms of weight 1 (negative terms and weights are refused: a max of
  weighted similarities is not what the method defines).
* ``learned:DIR``: :class:`xmr.multiquery.QueryWeighting` attention over the terms (unweighted text terms only).

An image with modifying text (``Query.composed``) is the training-free composed-retrieval baseline: the
``mean-sim`` fusion of the image and the text embeddings (image + text in the shared space). With ``composer=DIR``
(a folder written by ``xmr train-compose``: TIRG, JVSM; docs/composed.md) the two embeddings are composed by that
learned model instead, into one probe vector: the query must then be one image and positive, unweighted texts
(several texts are joined ``"A and B"`` into one modification, as FashionIQ's two captions are), and the composer
must have been trained on the index's model (same spec and width: ConfigError otherwise).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

TERM_KINDS = ("text", "image", "vector")
MAX_TERMS = 32


@dataclass(frozen=True)
class Term:
    kind: str  # text | image | vector
    value: object  # str, image path / PIL image / bytes-decoded image, or (dim,) array
    weight: float = 1.0  # < 0: a negative term

    def describe(self) -> dict:
        if self.kind == "text":
            v = self.value
        elif self.kind == "image":
            v = os.fspath(self.value) if isinstance(self.value, (str, os.PathLike)) else "image upload"
        else:
            v = f"vector[{np.asarray(self.value).shape[-1]}]"
        return {"kind": self.kind, "value": v, "weight": self.weight}


@dataclass(frozen=True)
class Query:
    """What a user asks for. Build with the constructors (:meth:`text`, :meth:`texts`, :meth:`image`,
    :meth:`composed`, :meth:`vector`) or from terms."""

    terms: tuple[Term, ...]
    fuse: str = "mean-sim"
    composer: str | None = None  # folder of a trained composer (xmr train-compose): image + text composed by it
    lang: str | None = None  # language of the text terms (ISO 639-1); None: the encoder detects it per text

    def __post_init__(self):
        if self.lang is not None and (not isinstance(self.lang, str) or not self.lang.strip()):
            raise ConfigError(f"query language must be a language code such as 'de', got {self.lang!r}")
        if not self.terms:
            raise ConfigError("empty query: give a text, an image or a vector")
        if any(t.kind == "image" for t in self.terms) and any(
                t.kind == "text" and (not isinstance(t.value, str) or not t.value.strip()) for t in self.terms):
            raise ConfigError("empty modification text: say what to change in the image (e.g. \"in red\"), or "
                              "search with the image alone")
        if len(self.terms) > MAX_TERMS:
            raise ConfigError(f"a query has at most {MAX_TERMS} terms, got {len(self.terms)}")
        for t in self.terms:
            if t.kind not in TERM_KINDS:
                raise ConfigError(f"query term kind must be one of {TERM_KINDS}, got {t.kind!r}")
            if t.kind == "text" and (not isinstance(t.value, str) or not t.value.strip()):
                raise ConfigError("empty text query")
            if not np.isfinite(t.weight) or t.weight == 0:
                raise ConfigError(f"query term weights must be finite and non-zero, got {t.weight!r}")
        if not any(t.weight > 0 for t in self.terms):
            raise ConfigError("a query needs at least one positive term (only negative terms were given)")
        name = self.fuse_name
        if name == "max" and any(t.weight != 1.0 for t in self.terms):
            raise ConfigError("fusion 'max' takes positive, unweighted terms only (negative or weighted terms are "
                              "defined for mean-sim and mean-emb)")
        if name == "learned" and any(t.kind != "text" or t.weight != 1.0 for t in self.terms):
            raise ConfigError("fusion 'learned' weighs unweighted text queries only")
        if self.composer is not None:
            if self.kind != "composed" or any(t.weight != 1.0 for t in self.terms) or name != "mean-sim":
                raise ConfigError("a composer composes one image with modification text: give --image FILE and the "
                                  "text(s), without --vector, --not, --weights or --fuse")

    # ---- constructors ----------------------------------------------------------------------------------------
    @classmethod
    def text(cls, text: str) -> "Query":
        return cls((Term("text", text),))

    @classmethod
    def texts(cls, texts, fuse: str = "mean-sim", weights=None, negatives=()) -> "Query":
        """Several texts describing one target (multi-query), optional weights and negative texts."""
        texts = [str(t) for t in texts]
        weights = [1.0] * len(texts) if weights is None else [float(w) for w in weights]
        if len(weights) != len(texts):
            raise ConfigError(f"{len(weights)} weights for {len(texts)} texts")
        terms = [Term("text", t, w) for t, w in zip(texts, weights)]
        terms += [Term("text", str(t), -1.0) for t in negatives]
        return cls(tuple(terms), fuse)

    @classmethod
    def image(cls, image) -> "Query":
        return cls((Term("image", image),))

    @classmethod
    def composed(cls, image, texts, fuse: str = "mean-sim", negatives=(), composer: str | None = None) -> "Query":
        """An image and text(s) that modify it ("like this photo, but at night"); ``composer``: the folder of a
        learned composer (training-free fusion without one)."""
        terms = [Term("image", image)] + [Term("text", str(t)) for t in texts]
        terms += [Term("text", str(t), -1.0) for t in negatives]
        return cls(tuple(terms), fuse, composer)

    @classmethod
    def vector(cls, vec) -> "Query":
        return cls((Term("vector", np.asarray(vec, dtype=np.float32)),))

    # ---- facts ------------------------------------------------------------------------------------------------
    @property
    def fuse_name(self) -> str:
        from ..multiquery import FUSIONS

        name = str(self.fuse).strip().partition(":")[0]
        FUSIONS.get(name)  # unknown names: ConfigError with the list
        return name

    @property
    def kind(self) -> str:
        """``text`` (one text), ``texts``, ``image``, ``composed`` (image + text), ``vector``, or ``mixed``."""
        kinds = {t.kind for t in self.terms}
        if len(self.terms) == 1:
            return self.terms[0].kind
        if kinds == {"text"}:
            return "texts"
        if kinds == {"image", "text"} and sum(t.kind == "image" for t in self.terms) == 1:
            return "composed"
        return "mixed"

    @property
    def positive_texts(self) -> list[str]:
        return [t.value for t in self.terms if t.kind == "text" and t.weight > 0]

    def describe(self):
        """JSON form for results: the text itself for a one-text query (as before), else the terms."""
        if len(self.terms) == 1 and self.terms[0].kind == "text":
            return self.terms[0].value
        if self.kind == "texts" and all(t.weight == 1.0 for t in self.terms):
            return [t.value for t in self.terms]
        if len(self.terms) == 1 and self.terms[0].kind == "image":
            return {"image": self.terms[0].describe()["value"]}
        if self.composer is not None:
            return {"terms": [t.describe() for t in self.terms], "composer": self.composer}
        return {"terms": [t.describe() for t in self.terms], "fuse": self.fuse}


@dataclass
class QueryEmbedding:
    """A query in the encoder's space. ``vectors`` (N, d) L2-normalised term embeddings, ``weights`` (N,).

    :meth:`score` is the exact fused score of any item vectors; :attr:`probes` are the vectors a first stage
    searches with (one for linear fusions; one per term for ``max``), so that every item of the exact top-k is in
    the union of the probes' top-k."""

    query: Query
    vectors: np.ndarray
    weights: np.ndarray
    fuse: str
    model: object = None  # QueryWeighting for learned:DIR
    fused: np.ndarray | None = field(default=None, repr=False)  # (d,) for linear fusions

    @property
    def linear(self) -> bool:
        return self.fuse != "max"

    @property
    def probes(self) -> np.ndarray:
        return self.fused[None].astype(np.float32) if self.linear else self.vectors.astype(np.float32)

    def score(self, vecs: np.ndarray) -> np.ndarray:
        """Exact fused scores (n,) float64 of item vectors (n, d)."""
        v = np.asarray(vecs, dtype=np.float64)
        if self.linear:
            return v @ self.fused.astype(np.float64)
        return (v @ self.vectors.T.astype(np.float64)).max(axis=1)

    def head_queries(self) -> list[tuple[np.ndarray, float]]:
        """(vector, weight) pairs a video head scores with: the fused vector for linear fusions, else each term
        (the head's scores are then combined like the similarities: the max over terms)."""
        if self.linear:
            return [(self.fused.astype(np.float32), 1.0)]
        return [(v.astype(np.float32), 1.0) for v in self.vectors]


def encode_query(encoder, query: Query) -> QueryEmbedding:
    """Encode every term with ``encoder`` (texts in one batch) and fuse them (:func:`embed_terms`); raises
    ConfigError for a capability the encoder lacks or a vector of the wrong width, MediaError for an unreadable
    image."""
    from ..encoders.base import l2_normalize

    if query.composer is not None:
        return _encode_composed(encoder, query)
    d = encoder.dim
    vecs = np.zeros((len(query.terms), d), np.float32)
    texts = [(i, t.value) for i, t in enumerate(query.terms) if t.kind == "text"]
    if texts:
        encoder.require("text", "a text query")
        if query.lang is not None:
            enc = encoder.encode_text([t for _, t in texts], lang=query.lang)
        else:
            enc = encoder.encode_text([t for _, t in texts])
        for (i, _), v in zip(texts, enc):
            vecs[i] = v
    images = [(i, t.value) for i, t in enumerate(query.terms) if t.kind == "image"]
    if images:
        from ..video.clips import refuse_image_query

        refuse_image_query(encoder)  # a whole-clip model says why, and what to search with instead
        encoder.require("images", "an image query")
        enc = encoder.encode_images([im for _, im in images], show_progress=False)
        for (i, _), v in zip(images, enc):
            vecs[i] = v
    for i, t in enumerate(query.terms):
        if t.kind == "vector":
            v = np.asarray(t.value, dtype=np.float32).reshape(-1)
            if v.shape != (d,) or not np.isfinite(v).all() or not np.linalg.norm(v) > 0:
                raise ConfigError(f"a vector query must be {d} finite numbers, not all zero (the index's model "
                                  f"{encoder.spec!r} has dim {d}); got shape {v.shape}")
            vecs[i] = l2_normalize(v[None])[0]
    return embed_terms(query, vecs)


_COMPOSERS: dict = {}  # (folder, config mtime, weights mtime) -> loaded composer


def loaded_composer(directory: str):
    """The composer in ``directory``, loaded once per process (reloaded when its files change)."""
    import os

    from ..compose import load_composer

    d = os.path.abspath(os.path.expanduser(str(directory)))
    try:
        key = (d, os.stat(os.path.join(d, "config.json")).st_mtime_ns,
               os.stat(os.path.join(d, "model.safetensors")).st_mtime_ns)
    except OSError:
        key = None  # load_composer says what is missing
    if key is None or key not in _COMPOSERS:
        c = load_composer(d)
        if key is not None:
            _COMPOSERS.clear()  # one composer in use at a time is the common case; keep memory bounded
            _COMPOSERS[key] = c
        return c
    return _COMPOSERS[key]


def _encode_composed(encoder, query: Query) -> QueryEmbedding:
    """Image + joined modification text through the query's composer: one fused probe."""
    from ..compose import check_compatible, compose_numpy

    composer = loaded_composer(query.composer)
    check_compatible(composer, encoder.dim, encoder.spec)  # before any encoding: a wrong composer costs nothing
    encoder.require("images", "a composed query")
    encoder.require("text", "a composed query")
    image = next(t.value for t in query.terms if t.kind == "image")
    text = " and ".join(t.value.strip() for t in query.terms if t.kind == "text")
    img = encoder.encode_images([image], show_progress=False)
    txt = encoder.encode_text([text])
    fused = compose_numpy(composer, img, txt)[0]
    vecs = np.stack([img[0], txt[0]]).astype(np.float32)
    emb = QueryEmbedding(query, vecs, np.ones(2), "composer", composer)
    emb.fused = fused.astype(np.float64)
    return emb


def embed_terms(query: Query, vecs: np.ndarray, model=None) -> QueryEmbedding:
    """The :class:`QueryEmbedding` of ``query`` from its terms' L2-normalised embeddings ``vecs`` (N, d), in term
    order (evaluation passes the caption embeddings it already has). ``model``: an already loaded
    :class:`~xmr.multiquery.QueryWeighting` for ``learned:DIR`` (loaded from the spec otherwise)."""
    from ..multiquery import parse_fuse_spec

    name, loaded = parse_fuse_spec(query.fuse) if model is None else (query.fuse_name, None)
    model = model if model is not None else loaded
    vecs = np.asarray(vecs, dtype=np.float32)
    d = vecs.shape[1]
    w = np.array([t.weight for t in query.terms], dtype=np.float64)
    emb = QueryEmbedding(query, vecs, w, name, model)
    if name == "learned":
        if model.config.dim != d:
            raise ConfigError(f"learned fusion was trained on dim {model.config.dim}, the encoder gives {d}")
        emb.fused = np.asarray(model.fuse(vecs[None], np.ones((1, len(vecs)), bool))[0], dtype=np.float64)
    elif name in ("mean-sim", "mean-emb"):
        v = (w[:, None] * vecs.astype(np.float64)).sum(0) / w[w > 0].sum()
        if name == "mean-emb":
            n = np.linalg.norm(v)
            if not n > 0:
                raise ConfigError("the weighted terms cancel out (their mean embedding is zero)")
            v = v / n
        emb.fused = v
    return emb


__all__ = ["Query", "Term", "QueryEmbedding", "encode_query", "embed_terms", "TERM_KINDS"]
