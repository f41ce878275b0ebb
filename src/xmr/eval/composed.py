"""Composed retrieval (reference image + modification text -> target image): the queries of each method from
embeddings, ranks, and the published protocols' recalls -- numpy in, numpy out.

Protocols (``dataset.scheme`` picks one; :data:`COMPOSED_PROTOCOLS`):

* ``fashion200k`` -- TIRG's test code: R@1, R@10, R@50 (percent); a query is correct at K when one of its top-K
  gallery images has the target's description (the dataset's ``targets``); the source image is taken out of its
  own ranking.
* ``fashioniq`` -- R@10 and R@50 per category (each category ranked against its own gallery), then the mean over
  categories of each, and ``mean`` = (R@10 + R@50) / 2, the number FashionIQ papers report as the average;
  the reference is not taken out.
* ``edits`` (``xmr synth edits``) -- R@1, R@5, R@10, R@50 with the fashion200k rules (every gallery image with
  the target's attributes is correct; the reference is taken out).

Rank convention: the 1-based rank of the best-placed correct image, counting every other-than-correct image that
scores *strictly* higher, plus the images that tie with it (pessimistic ties: a constant score matrix never looks
good).

Methods (:func:`compose_queries`): ``image`` (the reference's embedding), ``text`` (the modification's), ``fusion``
(the training-free mean of the two, ``xmr search --image A "TEXT"`` without a composer), ``composer`` (a
learned composer of :mod:`xmr.compose`).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

COMPOSED_PROTOCOLS = {"fashion200k": (1, 10, 50), "fashioniq": (10, 50), "edits": (1, 5, 10, 50)}
METHODS = ("image", "text", "fusion", "composer")


def compose_queries(method: str, references: np.ndarray, texts: np.ndarray, composer=None) -> np.ndarray:
    """(Q, d) query vectors from the references' and the texts' L2-normalised embeddings (Q, d)."""
    r = np.asarray(references, dtype=np.float32)
    t = np.asarray(texts, dtype=np.float32)
    if r.shape != t.shape or r.ndim != 2:
        raise ConfigError(f"compose_queries: references {r.shape} and texts {t.shape} must both be (Q, d)")
    if method == "image":
        return r
    if method == "text":
        return t
    if method == "fusion":
        return (r + t) / 2.0  # mean-sim of the two terms: the ranking of Query.composed without a composer
    if method == "composer":
        if composer is None:
            raise ConfigError("method 'composer' needs a composer (a folder written by xmr train-compose)")
        from ..compose import compose_numpy

        return compose_numpy(composer, r, t)
    raise ConfigError(f"unknown composed-query method {method!r}; one of {', '.join(METHODS)}")


def composed_ranks(sims: np.ndarray, targets, references=None, query_groups=None, gallery_groups=None) -> np.ndarray:
    """(Q,) 1-based rank of each query's best-placed correct gallery item (module docstring's convention).

    ``sims`` (Q, N); ``targets[q]`` the correct gallery indexes of query q; ``references[q]`` (optional) a gallery
    index taken out of q's ranking; with ``query_groups`` (Q,) and ``gallery_groups`` (N,), q is ranked against the
    gallery items of its own group only."""
    s = np.asarray(sims, dtype=np.float64)
    if s.ndim != 2 or len(targets) != s.shape[0]:
        raise ConfigError(f"composed_ranks: sims must be (Q, N) with Q = {len(targets)} target lists, got {s.shape}")
    ranks = np.empty(s.shape[0], np.int64)
    gg = None if gallery_groups is None else np.asarray(gallery_groups)
    for q in range(s.shape[0]):
        row = s[q]
        valid = np.ones(row.shape[0], bool)
        if gg is not None and query_groups is not None:
            valid &= gg == query_groups[q]
        if references is not None and references[q] is not None:
            valid[references[q]] = False
        tg = np.zeros(row.shape[0], bool)
        tg[list(targets[q])] = True
        tg &= valid
        if not tg.any():
            raise ConfigError(f"query {q}: none of its targets is in its gallery (after taking out the reference)")
        best = row[tg].max()
        others = valid & ~tg
        ranks[q] = 1 + int((row[others] >= best).sum())
    return ranks


def recall_at(ranks: np.ndarray, ks) -> dict:
    """``{"R@K": percent of ranks <= K}``."""
    r = np.asarray(ranks)
    return {f"R@{k}": round(float((r <= k).mean() * 100.0), 2) for k in ks}


def composed_metrics(protocol: str, ranks: np.ndarray, query_groups=None) -> dict:
    """The protocol's recalls from :func:`composed_ranks`; ``fashioniq`` adds ``<group>/R@K`` per category, the
    means over categories as ``R@K`` and ``mean``."""
    if protocol not in COMPOSED_PROTOCOLS:
        raise ConfigError(f"unknown composed protocol {protocol!r}; one of {', '.join(COMPOSED_PROTOCOLS)}")
    ks = COMPOSED_PROTOCOLS[protocol]
    r = np.asarray(ranks)
    if protocol != "fashioniq":
        return {**recall_at(r, ks), "queries": int(len(r))}
    groups = np.asarray(query_groups if query_groups is not None else [""] * len(r))
    out: dict = {}
    per = {}
    for g in sorted(set(groups.tolist())):
        per[g] = recall_at(r[groups == g], ks)
        for k, v in per[g].items():
            out[f"{g}/{k}"] = v
    for k in (f"R@{k}" for k in ks):
        out[k] = round(float(np.mean([p[k] for p in per.values()])), 2)
    out["mean"] = round((out["R@10"] + out["R@50"]) / 2.0, 2)
    out["queries"] = int(len(r))
    return out


def evaluate_composed_embeddings(dataset, gallery: np.ndarray, texts: np.ndarray, method: str = "composer",
                                 composer=None) -> dict:
    """Metrics of ``method`` on ``dataset`` (:class:`xmr.data.composed.ComposedDataset`) from the gallery's image
    embeddings (N, d) and the queries' text embeddings (Q, d), all L2-normalised."""
    g = np.asarray(gallery, dtype=np.float32)
    refs = np.array([q.reference for q in dataset.queries])
    queries = compose_queries(method, g[refs], texts, composer)
    sims = queries @ g.T
    groups = [q.group for q in dataset.queries]
    ranks = composed_ranks(sims, [q.targets for q in dataset.queries],
                           refs if dataset.exclude_reference else None, groups, dataset.groups)
    return composed_metrics(dataset.scheme, ranks, groups)


def evaluate_composed(dataset, encoder, methods=("composer",), composer=None, *, batch_size: int = 16,
                      show_progress: bool | None = None) -> list[dict]:
    """Encode the gallery and the modification texts with ``encoder`` once and evaluate each of ``methods``
    (:data:`METHODS`); one result dict per method. A composer trained on another encoder or width is refused
    (:func:`xmr.compose.check_compatible`) before anything is encoded; an image that cannot be decoded raises
    MediaError (nothing is dropped)."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown composed-query method {m!r}; one of {', '.join(METHODS)}")
    if "composer" in methods:
        if composer is None:
            raise ConfigError("method 'composer' needs a composer (--composer DIR, written by xmr train-compose)")
        from ..compose import check_compatible

        check_compatible(composer, encoder.dim, encoder.spec)
    gallery = encoder.encode_images(dataset.media, batch_size=batch_size, show_progress=show_progress)
    texts = encoder.encode_text([q.text for q in dataset.queries], show_progress=show_progress)
    out = []
    for m in methods:
        res = evaluate_composed_embeddings(dataset, gallery, texts, m, composer)
        out.append({"dataset": dataset.name, "protocol": dataset.scheme, "method": m, "model": encoder.spec,
                    **({"composer": getattr(composer, "directory", None)} if m == "composer" else {}), **res})
    return out


__all__ = ["COMPOSED_PROTOCOLS", "METHODS", "compose_queries", "composed_metrics", "composed_ranks",
           "evaluate_composed", "evaluate_composed_embeddings", "recall_at"]
