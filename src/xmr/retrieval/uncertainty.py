"""PCME uncertainty of a search: for a probabilistic model (``trained:DIR`` written by ``xmr train --loss pcme`` or
``daa``) the query terms' and the image results' uncertainty, reported by ``xmr search --json``.

The uncertainty of an input is PCME's per-input scalar as xmr defines it (:meth:`AdaptedEncoder
.encode_with_uncertainty`): the mean over dimensions of the learned ``log σ`` (the log of the geometric-mean σ);
higher means a more ambiguous caption or image (PCME Sec. 5.3). The index stores only the means, so the results'
uncertainty is computed at search time from their files (images; a video result has none: ``null``).
"""
from __future__ import annotations

import math

from ..errors import MediaError
from .query import Query
from .result import SearchResult

MEASURE = "mean log sigma over dimensions (PCME); higher = more ambiguous"


def search_uncertainty(encoder, query: Query, results: list[SearchResult]) -> dict | None:
    """``{"measure", "query": [{"kind", "log_sigma"} per text / image term], "results": {id: log_sigma | None}}``,
    or None when ``encoder`` is not probabilistic. A result file that cannot be read now gets ``None`` and its
    error in ``"errors"``."""
    if not getattr(encoder, "probabilistic", False):
        return None
    terms = []
    for t in query.terms:
        if t.kind in ("text", "image"):
            _, u = encoder.encode_with_uncertainty(t.kind, [t.value])
            terms.append({"kind": t.kind, "weight": t.weight, "log_sigma": round(float(u[0]), 6)})
    per_result: dict[int, float | None] = {r.id: None for r in results}
    errors: dict[int, str] = {}
    images = [r for r in results if r.media_type == "image"]
    if images:
        from ..media.image import load_image

        loaded = []
        for r in images:
            try:
                loaded.append((r, load_image(r.path)))
            except MediaError as e:
                errors[r.id] = str(e)
        if loaded:
            _, u = encoder.encode_with_uncertainty("image", [im for _, im in loaded])
            for (r, _), v in zip(loaded, u):
                per_result[r.id] = round(float(v), 6) if math.isfinite(float(v)) else None
    out = {"measure": MEASURE, "query": terms, "results": per_result}
    if errors:
        out["errors"] = errors
    return out


__all__ = ["MEASURE", "search_uncertainty"]
