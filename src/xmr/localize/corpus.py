"""Moments ranked across a corpus from per-clip start / end log-probabilities, and TVR submissions from them.

A span ``(v, i, j)`` scores ``video[v] + start[v, i] + end[v, j]`` (log-probabilities: the video's among the
videos, the start / end clip's within the video; SQuiDNet's inference), ``0 <= j - i < max_len``. VCMR takes the
best spans of the whole corpus, SVMR the best ``start + end`` of the ground-truth video, VR ranks videos by their
video log-probability. numpy only.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def corpus_top_spans(start, end, *, max_len: int, top: int) -> list[tuple[int, int, int, float]]:
    """Best ``top`` spans ``(video, first clip, last clip, score)`` of one query over all videos, best first.

    start / end (V, T); clips padded with ``-inf`` never start or end a span."""
    st = np.asarray(start, dtype=np.float64)
    ed = np.asarray(end, dtype=np.float64)
    if st.ndim != 2 or st.shape != ed.shape or st.size == 0 or max_len < 1 or top < 1:
        raise ConfigError("corpus_top_spans needs (videos, clips) start / end scores, max_len >= 1, top >= 1")
    v, t = st.shape
    grid = st[:, :, None] + ed[:, None, :]  # (V, T, T)
    i, j = np.indices((t, t))
    grid[:, (j < i) | (j - i >= max_len)] = -np.inf
    flat = grid.reshape(-1)
    k = min(top, flat.size)
    part = np.argpartition(-flat, k - 1)[:k]
    part = part[np.lexsort((part, -flat[part]))]  # best first; ties: lower flat index (video, start, end)
    out = []
    for f in part:
        if not np.isfinite(flat[f]):
            break
        vv, rem = divmod(int(f), t * t)
        out.append((vv, rem // t, rem % t, float(flat[f])))
    return out


def submission(start, end, video, clip_times, *, max_len: int, gt_videos=None, top: int = 100,
               video_ids=None) -> dict:
    """A TVR submission (``video2idx``, ``VCMR``, ``VR`` and, given ``gt_videos``, ``SVMR``) for Q queries.

    start / end (Q, V, T), video (Q, V) log-probabilities; ``clip_times`` (V, T, 2) seconds of each clip;
    ``gt_videos`` (Q,) the ground-truth video of each query (for SVMR); ``video_ids`` names (default ``v{n}``).
    desc_id of query q is q."""
    st, ed, vid = (np.asarray(a, dtype=np.float64) for a in (start, end, video))
    times = np.asarray(clip_times, dtype=np.float64)
    q, v, t = st.shape
    if ed.shape != st.shape or vid.shape != (q, v) or times.shape != (v, t, 2):
        raise ConfigError(f"submission: start / end {st.shape}, video {vid.shape}, clip_times {times.shape} disagree")
    names = list(video_ids) if video_ids is not None else [f"v{n}" for n in range(v)]
    out: dict = {"video2idx": {n: i for i, n in enumerate(names)}, "VCMR": [], "VR": []}
    if gt_videos is not None:
        out["SVMR"] = []
    for k in range(q):
        spans = corpus_top_spans(st[k] + vid[k][:, None], ed[k], max_len=max_len, top=top)
        out["VCMR"].append({"desc_id": k, "predictions": [
            [vv, float(times[vv, i, 0]), float(times[vv, j, 1]), s] for vv, i, j, s in spans]})
        order = np.argsort(-vid[k], kind="stable")[:top]
        out["VR"].append({"desc_id": k, "predictions": [[int(o), 0.0, 0.0, float(vid[k, o])] for o in order]})
        if gt_videos is not None:
            g = int(gt_videos[k])
            spans = corpus_top_spans(st[k, g:g + 1], ed[k, g:g + 1], max_len=max_len, top=top)
            out["SVMR"].append({"desc_id": k, "predictions": [
                [g, float(times[g, i, 0]), float(times[g, j, 1]), s] for _, i, j, s in spans]})
    return out


__all__ = ["corpus_top_spans", "submission"]
