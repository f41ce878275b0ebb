"""Video embeddings for the index: one vector per video plus one per time segment.

A video is sampled at ``fps`` frames per second (at least ``min_frames`` frames, at most ``max_frames``), every
frame is embedded by the index's image encoder (``Encoder.encode_images`` on PIL frames, L2-normalised), and the
frame embeddings are pooled:

* the **video vector** pools all frames;
* each **segment vector** pools the frames inside one sliding window ``[start, end)`` (``window`` seconds,
  every ``stride`` seconds; the last window ends at the clip's end; a clip shorter than ``window`` is one segment).

Pooling is CLIP4Clip's parameter-free *meanP*: mean of the L2-normalised frame embeddings, L2-normalised again
(:func:`mean_pool`). ``embed_video(..., pool=...)`` takes any callable with the same signature, which is where a
trained temporal head (a ``VIDEO_HEADS`` entry) plugs in; heads that need the text query (X-Pool-style
attention) cannot be precomputed into an index and are a re-scoring step instead.

Long videos: when ``duration * fps > max_frames`` the rate is lowered to ``max_frames / duration`` and the window
and stride grow by the same factor, so every segment still pools about ``window * fps`` frames and the number of
segments stays bounded. Frames are decoded and encoded ``batch_size`` at a time, so memory holds one batch of
(downscaled) frames plus the ``(num_frames, dim)`` float32 embeddings, whatever the file's length.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ..encoders.base import Encoder, l2_normalize

#: pool(frame_embeddings (T, dim) L2-normalised, frame_times (T,) seconds) -> (dim,) L2-normalised
Pool = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VideoIndexConfig:
    """How videos are sampled and cut into segments when indexed."""

    fps: float = 1.0  # frames sampled per second of video (upper bound)
    min_frames: int = 8  # short clips get at least this many frames, spread uniformly
    max_frames: int = 1800  # cap per video (30 min at 1 fps); longer videos are sampled more sparsely
    window: float = 4.0  # segment length, seconds (grows with the same factor as fps shrinks for long videos)
    stride: float = 2.0  # segment hop, seconds
    frame_size: int = 336  # decoded frames are downscaled so the shorter side is at most this many pixels

    def __post_init__(self):
        from ..errors import ConfigError

        if not (self.fps > 0 and self.window > 0 and 0 < self.stride and self.min_frames >= 1
                and self.max_frames >= self.min_frames and self.frame_size >= 32):
            raise ConfigError(f"invalid video indexing settings: {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VideoEmbedding:
    vector: np.ndarray  # (dim,) float32, L2-normalised
    segments: list[tuple[float, float, np.ndarray]]  # (start s, end s, (dim,) vector)
    width: int  # display size
    height: int
    duration: float
    num_frames: int  # frames encoded
    frames: tuple[np.ndarray, np.ndarray] | None = None  # (times (T,), features (T, ...)) when keep_frames=True


def mean_pool(frame_embs: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """CLIP4Clip meanP: mean of L2-normalised frame embeddings (T, dim), re-normalised -> (dim,)."""
    return l2_normalize(l2_normalize(frame_embs).mean(axis=0, keepdims=True))[0]


def frame_times(duration: float, cfg: VideoIndexConfig) -> tuple[np.ndarray, float]:
    """Sample times (s) and the scale factor applied to window/stride (1.0 unless the video is long)."""
    n = duration * cfg.fps
    if n > cfg.max_frames:
        scale = n / cfg.max_frames
        n = cfg.max_frames
    else:
        scale = 1.0
    n = int(min(cfg.max_frames, max(cfg.min_frames, math.floor(n + 0.5))))
    return (np.arange(n) + 0.5) * duration / n, scale


def segment_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Sliding windows ``[start, end)`` covering ``[0, duration]``; the last one ends at ``duration``."""
    if duration <= window:
        return [(0.0, float(duration))]
    n = int(math.ceil((duration - window) / stride - 1e-9)) + 1
    out = []
    for j in range(n):
        s = j * stride
        out.append((round(s, 3), round(min(s + window, duration), 3)))
    return out


def embed_video(
    path: str | os.PathLike,
    encoder: Encoder,
    cfg: VideoIndexConfig = VideoIndexConfig(),
    *,
    batch_size: int = 32,
    pool: Pool = mean_pool,
    keep_frames: bool = False,
) -> VideoEmbedding:
    """Decode, encode and pool one video. Raises :class:`~xmr.errors.MediaError` for a bad file.

    Frames are encoded by ``encoder.encode_frames(images)`` when the encoder has it (a ``video:`` encoder: frame
    embeddings, or patch tokens for TS2-Net), else by ``encoder.encode_images``. ``keep_frames=True`` also returns
    the frame times and features (``VideoEmbedding.frames``), which an index keeps for heads that re-score."""
    from ..media.video import VideoReader

    with VideoReader(path) as reader:
        return _embed(reader, encoder, cfg, batch_size, pool, keep_frames)


def _embed(reader, encoder: Encoder, cfg: VideoIndexConfig, batch_size: int, pool: Pool,
           keep_frames: bool = False) -> VideoEmbedding:
    from PIL import Image

    info = reader.info
    times, scale = frame_times(info.duration, cfg)
    encode = getattr(encoder, "encode_frames", None)
    if encode is None:
        def encode(images):
            return encoder.encode_images(images, batch_size=batch_size, show_progress=False)
    embs: np.ndarray | None = None  # (T, ...) features, allocated when the first batch gives their shape
    batch: list[Image.Image] = []
    i = 0

    def flush():
        nonlocal i, batch, embs
        if batch:
            f = np.asarray(encode(batch), dtype=np.float32)
            if embs is None:
                embs = np.zeros((len(times), *f.shape[1:]), dtype=np.float32)
            embs[i : i + len(batch)] = f
            i += len(batch)
            batch = []

    # segment membership follows the sampling grid (target times), not the decoded frames' own timestamps
    for _, arr in reader.frames_at(times, size=cfg.frame_size):
        batch.append(Image.fromarray(arr))
        if len(batch) >= batch_size:
            flush()
    flush()
    if embs is None or i != len(times):  # the reader raises first; this guards the contract (never zero frames)
        from ..errors import CorruptMediaError

        raise CorruptMediaError(reader.path, f"decoded {i} of {len(times)} frames")
    segs = []
    for s, e in segment_windows(info.duration, cfg.window * scale, cfg.stride * scale):
        m = (times >= s) & (times < e)  # sample times are < duration, so the last window takes the tail
        if m.any():
            segs.append((s, e, pool(embs[m], times[m])))
    return VideoEmbedding(pool(embs, times), segs, info.width, info.height, info.duration, len(times),
                          (times.astype(np.float64), embs) if keep_frames else None)
