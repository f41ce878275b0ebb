"""Temporal localisation over one video's per-clip scores, without training: span proposals, boundary refinement,
temporal NMS, and the top spans of start / end distributions. numpy only.

* :func:`propose` — proposals as maximal runs of clips whose score is above a level between the video's median and
  its peak (the "temporal actionness grouping" of Zhao et al., SSN, ICCV 2017, Sec. 3.4, at several levels
  ``gammas``), each scored by the mean score inside minus the mean score of the same length just outside (a
  contrast that prefers tight spans); then temporal NMS.
* :func:`refine` — boundary refinement: each boundary moves, within ``reach`` clips, to the position where the
  score crosses half way between the span's mean and the surrounding level (the sub-clip crossing is linearly
  interpolated between clip centres, so boundaries are not tied to the clip grid).
* :func:`top_spans` — the best ``(i, j)`` of ``start[i] + end[j]`` with ``0 <= j - i < max_len`` (how a start /
  end model such as SQuiDNet's turns its two distributions into moments).

Times: clip ``t`` covers ``[times[t, 0], times[t, 1]]`` seconds (e.g. the index's sliding windows).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Span:
    start: float  # seconds
    end: float  # seconds
    score: float
    first: int  # first clip
    last: int  # last clip (inclusive)


def _check(scores, times) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(times, dtype=np.float64).reshape(-1, 2)
    if s.size == 0:
        raise ConfigError("temporal localisation needs at least one clip score")
    if len(t) != len(s):
        raise ConfigError(f"{len(s)} clip scores but {len(t)} clip times")
    if not (np.isfinite(s).all() and np.isfinite(t).all()) or (t[:, 1] < t[:, 0]).any():
        raise ConfigError("clip scores and times must be finite, each clip's start <= end")
    return s, t


def span_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def nms(spans: list[Span], iou: float = 0.5, top: int | None = None) -> list[Span]:
    """Greedy temporal non-maximum suppression (best first; a span overlapping a kept one by >= ``iou`` goes)."""
    kept: list[Span] = []
    for s in sorted(spans, key=lambda s: -s.score):
        if all(span_iou((s.start, s.end), (k.start, k.end)) < iou for k in kept):
            kept.append(s)
            if top is not None and len(kept) >= top:
                break
    return kept


def propose(scores, times, *, gammas=(0.25, 0.5, 0.75), min_clips: int = 1, max_clips: int | None = None,
            nms_iou: float = 0.5, top: int = 10) -> list[Span]:
    """Proposals of one video from its per-clip scores (see the module docstring), best first."""
    s, t = _check(scores, times)
    n = len(s)
    base, peak = float(np.median(s)), float(s.max())
    cands: dict[tuple[int, int], Span] = {}
    for g in gammas:
        level = base + g * (peak - base)
        above = s >= level
        i = 0
        while i < n:
            if not above[i]:
                i += 1
                continue
            j = i
            while j + 1 < n and above[j + 1]:
                j += 1
            if j - i + 1 >= min_clips and (max_clips is None or j - i + 1 <= max_clips):
                length = j - i + 1
                outside = np.concatenate([s[max(0, i - length):i], s[j + 1:j + 1 + length]])
                contrast = float(s[i:j + 1].mean() - (outside.mean() if outside.size else base))
                cands[(i, j)] = Span(float(t[i, 0]), float(t[j, 1]), contrast, i, j)
            i = j + 1
    if not cands:  # every clip equal: the whole video is the only span
        cands[(0, n - 1)] = Span(float(t[0, 0]), float(t[-1, 1]), 0.0, 0, n - 1)
    return nms(list(cands.values()), nms_iou, top)


def refine(span: Span, scores, times, *, reach: int = 1) -> Span:
    """Move ``span``'s boundaries to where the score crosses half way between the span's mean and the level just
    outside it (linear interpolation between clip centres, at most ``reach`` clips away; never past the video)."""
    s, t = _check(scores, times)
    i, j = span.first, span.last
    inside = float(s[i:j + 1].mean())
    centre = t.mean(axis=1)

    def crossing(a: int, b: int) -> float | None:  # a inside, b outside the span
        lo, hi = s[b], s[a]
        mid = (inside + float(s[b])) / 2
        if not lo < mid < hi and not hi < mid < lo:
            return None
        frac = (hi - mid) / (hi - lo)
        return float(centre[a] + frac * (centre[b] - centre[a]))

    start, end = span.start, span.end
    if i > 0 and reach > 0:
        c = crossing(i, i - 1)
        if c is not None:
            start = max(float(t[max(0, i - reach), 0]), min(c, float(t[i, 1])))
    if j < len(s) - 1 and reach > 0:
        c = crossing(j, j + 1)
        if c is not None:
            end = min(float(t[min(len(s) - 1, j + reach), 1]), max(c, float(t[j, 0])))
    if end <= start:
        start, end = span.start, span.end
    return Span(start, end, span.score, i, j)


def top_spans(start_logp, end_logp, *, max_len: int, top: int) -> list[tuple[int, int, float]]:
    """The ``top`` best ``(i, j, start[i] + end[j])`` with ``0 <= j - i < max_len``, best first (ties: earlier
    start, then shorter)."""
    st = np.asarray(start_logp, dtype=np.float64).reshape(-1)
    ed = np.asarray(end_logp, dtype=np.float64).reshape(-1)
    if st.shape != ed.shape or st.size == 0 or max_len < 1 or top < 1:
        raise ConfigError("top_spans needs equal, non-empty start / end scores, max_len >= 1 and top >= 1")
    n = len(st)
    grid = st[:, None] + ed[None, :]
    i, j = np.indices((n, n))
    grid[(j < i) | (j - i >= max_len)] = -np.inf
    flat = np.argsort(-grid, axis=None, kind="stable")[:top]
    out = [(int(f // n), int(f % n), float(grid.flat[f])) for f in flat]
    return [o for o in out if np.isfinite(o[2])]


__all__ = ["Span", "nms", "propose", "refine", "span_iou", "top_spans"]
