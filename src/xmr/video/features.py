"""Decoded frames -> what the encoder's head takes: one function, :func:`encode_frames`, for index, train and eval.

* a plain image encoder: ``(T, D)`` L2-normalised frame embeddings (``encode_images``);
* a ``video:`` encoder (``capabilities.video``): its ``encode_frames`` — ``(T, D)`` embeddings, or ``(T, 1 + P, W)``
  patch tokens when the head pools patch tokens (``ts2net``).

On top of it: :func:`clip_features` decodes a clip (or a moment's ``start``/``end`` window) per a
:class:`~xmr.video.plan.FramePlan` and encodes it, ``batch_size`` frames at a time (memory: one batch of decoded
frames plus the features, whatever the file's length); :func:`frame_features` / :func:`frame_tokens` stack the
features of many items for training heads on frozen features. Decoding errors propagate as
:class:`~xmr.errors.MediaError`; no placeholder frames are ever substituted.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import CorruptMediaError, MediaError
from .plan import FramePlan

_TOKENS_WHY = "patch-token frame features (for ts2net: use tiny, a CLIP-style hf: ViT, or another head)"


def encode_frames(encoder, images: Sequence[Image.Image], batch_size: int = 32, *, tokens: bool | None = None
                  ) -> np.ndarray:
    """Frames (PIL images, one clip) -> float32 features.

    ``tokens=None`` (default): what the encoder's head needs — ``(T, 1 + P, W)`` patch tokens for a ``video:`` encoder
    whose head pools patch tokens (``ts2net``), else ``(T, D)`` L2-normalised embeddings. ``tokens=True`` / ``False``
    forces patch tokens (the image tower's ``encode_image_tokens``; ConfigError when the encoder has none) or
    embeddings."""
    images = list(images)
    caps = encoder.capabilities
    if tokens is None:
        if caps.video:  # declared: a temporal head decides (embeddings, or patch tokens for ts2net)
            return np.asarray(encoder.encode_frames(images, batch_size=batch_size), dtype=np.float32)
        tokens = False
    if not tokens:
        return np.asarray(encoder.encode_images(images, batch_size=batch_size, show_progress=False), np.float32)
    tower = encoder.base if caps.video else encoder  # a video: encoder's tokens are its image tower's
    tower.require("patch_tokens", _TOKENS_WHY)
    out = [tower.encode_image_tokens(images[s: s + batch_size]).float().cpu().numpy()
           for s in range(0, len(images), batch_size)]
    if not out:
        return np.zeros((0, 1, tower.token_width), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def clip_features(encoder, clip, plan: FramePlan, *, start: float | None = None, end: float | None = None,
                  batch_size: int = 32, tokens: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``clip`` per ``plan`` and encode it -> ``(times (T,) float64 seconds, features (T, ...) float32)``.

    ``clip``: a video path, or an item with ``.media`` and optional ``.start`` / ``.end`` (a moment), whose window is
    used unless ``start`` / ``end`` are given. Features are :func:`encode_frames`'s (``tokens`` as there).
    ``times`` are the plan's target times (the frame shown at each is encoded). Raises
    :class:`~xmr.errors.MediaError` for an undecodable file and for a window outside the clip."""
    from ..media.video import VideoReader

    path, start, end = _source(clip, start, end)
    with VideoReader(path) as reader:
        times, _ = window_times(plan, reader, start, end)
        return times, encode_times(reader, encoder, times, plan.frame_size, batch_size, tokens=tokens,
                                   tolerance=plan.tolerance(times))


def item_frames(item, num_frames: int, size: int | None = 224) -> list[Image.Image]:
    """``num_frames`` frames spread uniformly over an item's video (or its ``start``/``end`` window), as PIL images
    whose shorter side is at most ``size`` (``FramePlan.uniform(num_frames, size)``). Raises MediaError (bad file,
    or a window outside the clip)."""
    return decode_frames(item, FramePlan.uniform(num_frames, size))[1]


def decode_frames(clip, plan: FramePlan, *, start: float | None = None, end: float | None = None
                  ) -> tuple[np.ndarray, list[Image.Image]]:
    """Decode ``clip`` (path or item, as :func:`clip_features`) per ``plan`` -> (times (T,), T PIL images). Holds
    every frame in memory: for short clips (train / eval); the index streams with :func:`clip_features`."""
    from ..media.video import VideoReader

    path, start, end = _source(clip, start, end)
    with VideoReader(path) as reader:
        times, _ = window_times(plan, reader, start, end)
        frames = [Image.fromarray(arr) for _, arr in reader.frames_at(times, size=plan.frame_size,
                                                                       tolerance=plan.tolerance(times))]
    _check_count(path, len(frames), len(times))
    return times, frames


def frame_features(encoder, items: Sequence, num_frames: int = 8, size: int | None = 224) -> torch.Tensor:
    """Items with ``.media`` (video path) and optional ``.start`` / ``.end`` -> (N, T, D) float32 L2-normalised frame
    embeddings (``FramePlan.uniform(num_frames, size)``). Decoding errors propagate (MediaError)."""
    import torch

    out = np.zeros((len(items), num_frames, encoder.dim), dtype=np.float32)
    for i, it in enumerate(items):
        out[i] = encode_frames(encoder, item_frames(it, num_frames, size), tokens=False)
    return torch.from_numpy(out)


def frame_tokens(encoder, items: Sequence, num_frames: int = 8, size: int | None = 224) -> torch.Tensor:
    """Items -> (N, T, 1 + P, W) patch tokens. Raises ConfigError for encoders without patch tokens."""
    import torch

    tower = encoder.base if encoder.capabilities.video else encoder
    tower.require("patch_tokens", _TOKENS_WHY)  # before decoding anything
    return torch.stack([torch.from_numpy(encode_frames(encoder, item_frames(it, num_frames, size), tokens=True))
                        for it in items])


# ---- shared with embed.py --------------------------------------------------------------------------------------


def window_times(plan: FramePlan, reader, start: float | None, end: float | None) -> tuple[np.ndarray, float]:
    """``plan.times`` for an open :class:`~xmr.media.video.VideoReader`; a window outside the clip -> MediaError."""
    try:
        return plan.times(reader.info.duration, start, end)
    except ValueError as e:
        raise MediaError(reader.path, str(e)) from None


def encode_times(reader, encoder, times: np.ndarray, size: int | None, batch_size: int = 32, *,
                 tokens: bool | None = None, tolerance: float = 0.0) -> np.ndarray:
    """Decode the frames shown at ``times`` (or, with ``tolerance`` seconds, within that of them) from an open
    reader and encode them, ``batch_size`` at a time -> (T, ...) float32 (:func:`encode_frames`)."""
    feats: np.ndarray | None = None  # (T, ...) features, allocated when the first batch gives their shape
    batch: list[Image.Image] = []
    i = 0

    def flush():
        nonlocal i, batch, feats
        if batch:
            f = encode_frames(encoder, batch, batch_size, tokens=tokens)
            if feats is None:
                feats = np.zeros((len(times), *f.shape[1:]), dtype=np.float32)
            feats[i: i + len(batch)] = f
            i += len(batch)
            batch = []

    for _, arr in reader.frames_at(times, size=size, tolerance=tolerance):
        batch.append(Image.fromarray(arr))
        if len(batch) >= batch_size:
            flush()
    flush()
    _check_count(reader.path, i, len(times))
    return feats


def _check_count(path, got: int, want: int) -> None:
    # the reader raises first; this guards the contract (never zero or fewer frames than planned)
    if got != want or want == 0:
        raise CorruptMediaError(path, f"decoded {got} of {want} frames")


def _source(clip, start, end) -> tuple[str, float | None, float | None]:
    if isinstance(clip, (str, os.PathLike)):
        return os.fspath(clip), start, end
    media = getattr(clip, "media", None)
    if media is None:
        raise TypeError(f"expected a video path or an item with .media, got {type(clip).__name__}")
    return (os.fspath(media), getattr(clip, "start", None) if start is None else start,
            getattr(clip, "end", None) if end is None else end)
