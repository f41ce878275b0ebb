"""Uncertainty against retrieval quality, as PCME shows it (Chun et al. 2021, Sec. 5.3 / Fig. 5: R@1 of the queries
binned by their uncertainty falls as the uncertainty grows).

:func:`uncertainty_bins` (numpy in, numpy out): queries sorted by uncertainty, cut into ``bins`` groups of equal
size (``np.array_split`` of the stable ascending order: the first groups get one more query when it does not divide),
and each group's R@1 (percent; rank 0 = hit) and uncertainty range. PCME bins by uncertainty *level* on COCO's 25k
captions; equal-count bins keep every bin populated on small evaluation sets (stated deviation). The Spearman
correlation between uncertainty and rank is also returned (positive: more uncertain queries rank their match lower).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def uncertainty_bins(uncertainty, ranks, bins: int = 3) -> dict:
    """``uncertainty`` (N,) per query, ``ranks`` (N,) 0-based rank of each query's match ->
    ``{"queries", "log_sigma": {"mean", "std", "min", "max"}, "spearman_rank", "bins": [{"queries",
    "log_sigma_min", "log_sigma_max", "R@1"}, ...]}`` (bins from least to most uncertain)."""
    u = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    r = np.asarray(ranks).reshape(-1)
    if u.shape != r.shape:
        raise ConfigError(f"uncertainty has {u.size} entries but ranks {r.size}: one per query")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins must be a positive integer, got {bins!r}")
    if u.size < bins:
        raise ConfigError(f"{u.size} queries cannot fill {bins} uncertainty bins")
    if not np.isfinite(u).all():
        raise ConfigError("uncertainty holds NaN or infinite values")
    order = np.argsort(u, kind="stable")
    out_bins = []
    for part in np.array_split(order, bins):
        out_bins.append({"queries": int(part.size), "log_sigma_min": round(float(u[part].min()), 6),
                         "log_sigma_max": round(float(u[part].max()), 6),
                         "R@1": round(100.0 * float((r[part] == 0).mean()), 4)})
    rho = _spearman(u, r.astype(np.float64))
    return {"queries": int(u.size),
            "log_sigma": {"mean": round(float(u.mean()), 6), "std": round(float(u.std()), 6),
                          "min": round(float(u.min()), 6), "max": round(float(u.max()), 6)},
            "spearman_rank": None if rho is None else round(rho, 4), "bins": out_bins}


def model_uncertainty(dataset, encoder, sims, bins: int = 3, batch_size: int = 8, top: int = 5) -> dict:
    """``{"measure", "t2i": bins of the captions, "i2t": bins of the images}`` for a probabilistic image-text model
    (``encoder.encode_with_uncertainty``); ``sims`` (texts, items) gives the ranks (pessimistic ties; i2t: the
    item's best caption among all captions, the ``standard`` protocol's rule). Each direction also lists its
    ``top`` most uncertain queries (``most_uncertain``: the captions / images PCME would call ambiguous)."""
    from ..media.image import load_image
    from .ranks import ranks_i2t, ranks_t2i

    t2i = np.asarray(dataset.text_to_item)
    _, u_txt = encoder.encode_with_uncertainty("text", list(dataset.texts), batch_size=batch_size)
    u_img = np.concatenate([encoder.encode_with_uncertainty("image", [load_image(p) for p in
                                                                      dataset.media[s: s + batch_size]],
                                                            batch_size=batch_size)[1]
                            for s in range(0, len(dataset.media), batch_size)])
    r_t = ranks_t2i(sims, t2i)
    r_i = ranks_i2t(sims, t2i, allow_textless_items=True)
    has_text = np.isin(np.arange(len(dataset.media)), t2i)
    out_t, out_i = uncertainty_bins(u_txt, r_t, bins), uncertainty_bins(u_img[has_text], r_i, bins)
    out_t["most_uncertain"] = [{"text": dataset.texts[j], "log_sigma": round(float(u_txt[j]), 6)}
                               for j in np.argsort(-u_txt, kind="stable")[:top]]
    media = [m for m, h in zip(dataset.media, has_text) if h]
    u_kept = u_img[has_text]
    out_i["most_uncertain"] = [{"media": media[j], "log_sigma": round(float(u_kept[j]), 6)}
                               for j in np.argsort(-u_kept, kind="stable")[:top]]
    return {"measure": "mean log sigma over dimensions (PCME); bins from least to most uncertain",
            "t2i": out_t, "i2t": out_i}


__all__ = ["model_uncertainty", "uncertainty_bins"]
