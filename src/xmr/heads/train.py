"""Train a video head on frozen, precomputed features with symmetric InfoNCE (CLIP loss).

Frame features are computed once (frozen encoder) and kept in memory; only the head (and, optionally, a text
tower given by the caller) is trained. Each step takes a batch of distinct videos with one of their captions each,
scores the (B, B) matrix with ``head.similarity`` scaled by ``exp(logit_scale)`` (clamped at 100), and averages
the text->video and video->text cross-entropies.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import create_head
from .base import VideoHead

log = logging.getLogger(__name__)


def _group_pairs(pairs, num_texts: int, num_videos: int) -> list[np.ndarray]:
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ConfigError(f"pairs must be a non-empty (N, 2) array of (text index, video index), got {pairs.shape}")
    t, v = pairs[:, 0], pairs[:, 1]
    if t.min() < 0 or t.max() >= num_texts or v.min() < 0 or v.max() >= num_videos:
        raise ConfigError(f"pairs index out of range ({num_texts} texts, {num_videos} videos)")
    by_video: list[list[int]] = [[] for _ in range(num_videos)]
    for t, v in pairs:
        by_video[v].append(t)
    return [np.asarray(ts) for ts in by_video]


def caption_batches(rng: np.random.Generator, videos: np.ndarray, by_video, batch_size: int):
    """One epoch of contrastive batches: ``videos`` in a random order, cut into batches of ``batch_size`` (a last
    batch of one is dropped: it has no negative), each video with one of its captions drawn at random. Yields
    ``(video ids, caption ids)`` as int arrays; every draw comes from ``rng``, in this order."""
    order = rng.permutation(videos)
    for s in range(0, len(order), batch_size):
        vb = order[s: s + batch_size]
        if len(vb) < 2:
            continue
        yield vb, np.asarray([rng.choice(by_video[v]) for v in vb])


def train_head(
    frame_feats: torch.Tensor,
    text_emb: torch.Tensor,
    pairs: Sequence[tuple[int, int]] | np.ndarray,
    head_name: str | VideoHead = "mean",
    cfg: dict | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    batch_size: int = 64,
    text_tower: nn.Module | None = None,
    weight_decay: float = 0.01,
) -> VideoHead:
    """Train a head; returns it in eval mode.

    Args:
        frame_feats: (N_v, T, D) frozen frame features, or (N_v, T, 1 + P, W) patch tokens for ``ts2net``.
        text_emb: (N_t, D) frozen text embeddings; or, with ``text_tower``, that tower's inputs (N_t, ...).
        pairs: (text index, video index) positives; every video needs at least one to be sampled.
        head_name: a registered head name (built with ``cfg``, ``seed`` overriding its seed) or a head instance.
        text_tower: optional module trained jointly, mapping ``text_emb[idx]`` to (B, D) text embeddings.
        seed: seeds the head initialisation (when built here) and the batch order.
    """
    if getattr(head_name, "name", head_name) == "lean":  # no quiet switch to an undistilled few-frame head
        raise ConfigError("the `lean` head is trained by distillation from a many-frame teacher: use "
                          "`xmr train-head --head lean`, or xmr.heads.lean.train_lean (or train_teacher then "
                          "distill_student: benchmarks/lean.py shows the calls); train_head would train it without "
                          "a teacher")
    if isinstance(head_name, VideoHead):
        head = head_name
    else:
        head = create_head(head_name, {**(cfg or {}), "seed": seed})
    frame_feats = torch.as_tensor(frame_feats, dtype=torch.float32)
    by_video = _group_pairs(pairs, len(text_emb), len(frame_feats))
    videos = np.asarray([v for v, ts in enumerate(by_video) if len(ts)])
    if len(videos) < 2:
        raise ConfigError("train_head needs at least 2 videos with captions (contrastive loss)")
    params = list(head.parameters()) + (list(text_tower.parameters()) if text_tower is not None else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    head.train()
    if text_tower is not None:
        text_tower.train()
    t0 = time.perf_counter()
    for ep in range(epochs):
        total, steps = 0.0, 0
        for vb, tb in caption_batches(rng, videos, by_video, batch_size):
            text = text_emb[torch.as_tensor(tb)]
            if text_tower is not None:
                text = text_tower(text)
            sims = head.similarity(text, frame_feats[torch.as_tensor(vb)])  # (B, B)
            logits = sims * head.logit_scale.exp().clamp(max=100.0)
            target = torch.arange(len(vb))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        log.debug("train_head %s epoch %d: loss %.4f", head.name, ep + 1, total / max(steps, 1))
    log.info("trained %s head: %d epochs in %.1f s", head.name, epochs, time.perf_counter() - t0)
    head.eval()
    if text_tower is not None:
        text_tower.eval()
    return head
