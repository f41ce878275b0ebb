"""Frame features -> one video vector: :func:`pool_frames`, the single pooling rule of index and eval.

* a ``video:`` encoder (``capabilities.video``): its head's pooling (``encoder.video_pool``; heads that re-score —
  X-Pool, prototypes — give their query-independent candidate vector);
* any other encoder: CLIP4Clip's parameter-free *meanP* (:func:`mean_pool`).
"""
from __future__ import annotations

import numpy as np

from .._arrays import l2_normalize


def mean_pool(frame_embs: np.ndarray, frame_times: np.ndarray | None = None) -> np.ndarray:
    """CLIP4Clip meanP: mean of the L2-normalised frame embeddings (T, D), re-normalised -> (D,). ``frame_times`` is
    ignored (it is part of the pool signature ``pool(feats, times)``)."""
    return l2_normalize(l2_normalize(frame_embs).mean(axis=0, keepdims=True))[0]


def pool_frames(encoder, feats: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """Pool one clip's frame features ``feats`` ((T, D), or (T, 1 + P, W) patch tokens for ``ts2net``; from
    :func:`~xmr.video.features.encode_frames`) sampled at ``times`` (T,) seconds -> (D,) float32, L2-normalised: the
    encoder's head when ``encoder.capabilities.video``, else meanP."""
    if encoder.capabilities.video:  # the capability's contract: video_pool returns an L2-normalised (D,) vector
        return np.asarray(encoder.video_pool(feats, times), dtype=np.float32)
    return mean_pool(np.asarray(feats, dtype=np.float32), times)
