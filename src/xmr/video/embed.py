"""Video embeddings for the index: one vector per video plus one per time segment.

A video is sampled on the index's fps grid (:meth:`VideoIndexConfig.plan`, a :class:`~xmr.video.plan.FramePlan`:
``fps`` frames per second, at least ``min_frames``, at most ``max_frames``, shorter side ``frame_size``), every
frame is encoded by :func:`~xmr.video.features.encode_frames` (L2-normalised embeddings, or patch tokens for a
``ts2net`` head), and the frame features are pooled by :func:`~xmr.video.pool.pool_frames` (the encoder's head, or
CLIP4Clip's meanP for a plain image encoder):

* the **video vector** pools all frames;
* each **segment vector** pools the frames inside one sliding window ``[start, end)`` (``window`` seconds,
  every ``stride`` seconds; the last window ends at the clip's end; a clip shorter than ``window`` is one segment).

An audio-visual encoder (``encoder.capabilities.sound``: ``eao:DIR``, ``eclipse:DIR``) embeds each video and
window from its frames and sound track together instead (:mod:`xmr.video.av`). A whole-clip model
(``encoder.capabilities.clips``: ``trained:DIR`` of a video run) embeds the video and each window as its own clip
of ``clip_frames`` uniform frames (:mod:`xmr.video.clips`).

Heads that re-score (``encoder.capabilities.video_rescoring``: X-Pool, prototypes) store their query-independent
candidate vectors, and the frame times and features are returned too (:attr:`VideoEmbedding.frames`) for the index to
keep.

A head that only ever looks at a fixed number of uniform frames (``encoder.capabilities.video_frames``: the LEAN
student) gets just those decoded (:meth:`VideoIndexConfig.for_encoder`: ``FramePlan.uniform(n)`` over the clip,
the frames it was distilled on), not the fps grid; segments then pool the few decoded frames inside each window
(a window with none gets no segment vector).

Long videos: when ``duration * fps > max_frames`` the rate is lowered to ``max_frames / duration`` and the window
and stride grow by the same factor, so every segment still pools about ``window * fps`` frames and the number of
segments stays bounded. Frames are decoded and encoded ``batch_size`` at a time, so memory holds one batch of
(downscaled) frames plus the ``(num_frames, ...)`` float32 features, whatever the file's length.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..errors import ConfigError
from .features import encode_times, window_times
from .plan import FramePlan
from .pool import pool_frames

#: pool(frame_features (T, ...), frame_times (T,) seconds) -> (dim,) L2-normalised
Pool = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VideoIndexConfig:
    """How videos are sampled and cut into segments when indexed (recorded in the index as ``to_dict()``)."""

    fps: float = 1.0  # frames sampled per second of video (upper bound)
    min_frames: int = 8  # short clips get at least this many frames, spread uniformly
    max_frames: int = 1800  # cap per video (30 min at 1 fps); longer videos are sampled more sparsely
    window: float = 4.0  # segment length, seconds (grows with the same factor as fps shrinks for long videos)
    stride: float = 2.0  # segment hop, seconds
    frame_size: int = 336  # decoded frames are downscaled so the shorter side is at most this many pixels
    snap: float = 0.0  # each frame may be any frame shown within snap grid steps of its target (0 = exact; <= 0.5)
    frames: int | None = None  # N uniform frames per clip instead of the fps grid (set by for_encoder from a head
    # that looks at a fixed number of frames, e.g. the LEAN student); None: the fps grid above

    def __post_init__(self):
        if not (self.window > 0 and self.stride > 0 and self.frame_size is not None and self.frame_size >= 32):
            raise ConfigError(f"invalid video indexing settings: {self} (window and stride must be > 0, "
                              "frame_size >= 32)")
        try:
            self.plan
        except ConfigError as e:
            raise ConfigError(f"invalid video indexing settings: {self} ({e})") from None

    @property
    def plan(self) -> FramePlan:
        """The frame sampling: ``FramePlan.fps_grid(fps, min_frames, max_frames, frame_size, snap)``, or
        ``FramePlan.uniform(frames, frame_size, snap)`` when ``frames`` is set."""
        if self.frames is not None:
            return FramePlan.uniform(self.frames, size=self.frame_size, snap=self.snap)
        return FramePlan.fps_grid(self.fps, self.min_frames, self.max_frames, size=self.frame_size, snap=self.snap)

    def for_encoder(self, encoder) -> "VideoIndexConfig":
        """These settings as ``encoder`` is indexed with: when its head only ever looks at a fixed number of uniform
        frames (``encoder.capabilities.video_frames``, the LEAN student), only those are decoded (``frames`` set);
        otherwise unchanged. Segment windows stay; each pools the decoded frames that fall inside it."""
        n = getattr(getattr(encoder, "capabilities", None), "video_frames", None)
        if n is None or self.frames is not None:
            return self
        return replace(self, frames=int(n))

    def to_dict(self) -> dict:
        """``{"frames": plan.to_dict(), "window": ..., "stride": ...}``."""
        return {"frames": self.plan.to_dict(), "window": float(self.window), "stride": float(self.stride)}


@dataclass
class VideoEmbedding:
    vector: np.ndarray  # (dim,) float32, L2-normalised
    segments: list[tuple[float, float, np.ndarray]]  # (start s, end s, (dim,) vector)
    width: int  # display size
    height: int
    duration: float
    num_frames: int  # frames encoded
    frames: tuple[np.ndarray, np.ndarray] | None = None  # (times (T,) float64, features (T, ...)) when kept


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
    encoder,
    cfg: VideoIndexConfig = VideoIndexConfig(),
    *,
    batch_size: int = 32,
    pool: Pool | None = None,
    keep_frames: bool | None = None,
) -> VideoEmbedding:
    """Decode, encode and pool one video. Raises :class:`~xmr.errors.MediaError` for a bad file.

    By default the encoder's capabilities decide: frames pooled by :func:`~xmr.video.pool.pool_frames`, frame times
    and features kept (``VideoEmbedding.frames``) when ``encoder.capabilities.video_rescoring``. ``pool`` /
    ``keep_frames`` override that (e.g. a head's ``as_pool()`` over a plain image encoder's frames)."""
    from ..media.video import VideoReader

    if getattr(encoder.capabilities, "sound", False) and pool is None:  # eao / eclipse: frames + sound together
        from .av import embed_av_video

        return embed_av_video(path, encoder, cfg)
    if getattr(encoder.capabilities, "clips", False) and pool is None:  # a whole-clip model: video + windows as clips
        from .clips import embed_clip_video

        return embed_clip_video(path, encoder, cfg)
    if pool is None:
        def pool(feats, times):
            return pool_frames(encoder, feats, times)
    if keep_frames is None:
        keep_frames = encoder.capabilities.video_rescoring
    plan = cfg.for_encoder(encoder).plan  # a fixed-frame head (LEAN student): only its frames are decoded
    with VideoReader(path) as reader:
        info = reader.info
        times, scale = window_times(plan, reader, None, None)
        # segment membership follows the sampling grid (target times), not the decoded frames' own timestamps
        feats = encode_times(reader, encoder, times, plan.frame_size, batch_size, tolerance=plan.tolerance(times))
    segs = []
    for s, e in segment_windows(info.duration, cfg.window * scale, cfg.stride * scale):
        m = (times >= s) & (times < e)  # sample times are < duration, so the last window takes the tail
        if m.any():
            segs.append((s, e, pool(feats[m], times[m])))
    return VideoEmbedding(pool(feats, times), segs, info.width, info.height, info.duration, len(times),
                          (times.astype(np.float64), feats) if keep_frames else None)
