"""Cross-lingual caption retrieval: queries in language L, gallery = the English captions of the same images (line i
of L is the translation of English line i). Multi30K / XTD layouts (:func:`xmr.data.multi30k.read_parallel`);
metrics by :func:`xmr.eval.evaluate_sims` (every query ranks every gallery caption; its match is its translation).

``route`` says how the queries reach the encoder: ``"explicit"`` (``encode_text(..., lang=L)``, the language given),
``"detect"`` (the encoder decides per query, as ``xmr search`` does without ``--lang``; the detected languages are
counted in the result) or ``"english"`` (``lang="en"``: the English tower fed the foreign text, the floor).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import ConfigError

ROUTES = ("explicit", "detect", "english")


def crosslingual_caption_retrieval(encoder, folder: str, *, query_lang: str, split: str | None = "test_2016_flickr",
                                   gallery_lang: str = "en", kind: str = "multi30k", limit: int | None = None,
                                   route: str = "explicit", protocol: str = "standard") -> dict:
    """``{"t2i": {R@1, R@5, R@10, R@50, MdR, MnR}, "queries", "query_lang", "gallery_lang", "route", ...}``."""
    from ..data.multi30k import read_parallel
    from .protocols import evaluate_sims

    if route not in ROUTES:
        raise ConfigError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    if query_lang == gallery_lang:
        raise ConfigError(f"query language and gallery language are both {query_lang!r}: cross-lingual retrieval "
                          "needs two languages")
    par = read_parallel(folder, [query_lang, gallery_lang], split, kind=kind)
    queries, gallery = par[query_lang], par[gallery_lang]
    if limit is not None:
        queries, gallery = queries[:limit], gallery[:limit]
    if route == "explicit":
        q = encoder.encode_text(queries, lang=query_lang)
    elif route == "english":
        q = encoder.encode_text(queries, lang="en")
    else:
        q = encoder.encode_text(queries)
    g = encoder.encode_text(gallery, lang=gallery_lang)
    m = evaluate_sims(np.asarray(q) @ np.asarray(g).T, np.arange(len(queries)), protocol)["t2i"]
    out = {"t2i": m, "queries": len(queries), "query_lang": query_lang, "gallery_lang": gallery_lang,
           "route": route, "split": split, "model": encoder.spec}
    if route == "detect":
        out["detected"] = dict(Counter(d["lang"] for d in encoder.text_languages(queries)))
    return out


__all__ = ["ROUTES", "crosslingual_caption_retrieval"]
