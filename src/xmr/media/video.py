"""Video decoding with PyAV: sample a few frames from a clip without decoding (or holding) the whole clip.

Holds the public helpers :func:`probe`, :func:`sample_timestamps`, :func:`sample_frames` and :func:`iter_frames`,
and re-exports :class:`~xmr.media.video_reader.VideoReader` (the decoder, with its seek-or-decode-forward rule
and tunables ``SEEK_MIN_GAP_S`` / ``SEEK_NO_INDEX_GAP_S``: set those on :mod:`xmr.media.video_reader`, where the
reader reads them), :class:`~xmr.media.video_info.VideoInfo` and ``VIDEO_EXTENSIONS``.

:func:`sample_frames` returns an ``(N, H, W, 3)`` uint8 array of RGB frames, or raises a
:class:`~xmr.errors.MediaError` subclass with a reason. It never returns zero frames, a placeholder, or fewer
frames than asked for.

Which frames
------------
Targets are timestamps in seconds from the first video frame (``t = 0``). For each target the frame *shown* at
that time is returned: the last frame whose presentation time ``pts * time_base`` is ``<= t`` (so variable frame
rate clips are sampled by time, never by frame index). How the reader gets there (seek or decode forward,
non-reference pictures left out, one keyframe per target with a tolerance): :mod:`xmr.media.video_reader`.

Timestamp tolerance (``tolerance=`` seconds, default 0 = the exact frame above): any frame *shown* at some instant
within ``[t - tolerance, t + tolerance]`` is acceptable for target ``t``, and the reader decodes the cheapest one
(the keyframe nearest ``t`` inside that window when the decoder is not already close to it). A keyframe decoded
alone is the same picture as in a full decode (intra-coded), so returned frames always equal the reference
decode's frame with the same timestamp; only *which* frame is chosen moves, by at most the tolerance. Long sparse
sampling then costs one keyframe per target, whatever the file's length.

Rotation: the display matrix side data (``VideoFrame.rotation``, counter-clockwise degrees; or the legacy
``rotate`` stream tag, clockwise) is applied in multiples of 90 degrees, like ``ffmpeg``'s autorotate. Mirror
flips in the matrix are not applied.

Errors: zero-byte / unreadable files raise :class:`UnreadableMediaError`; files that are not media, have no video
stream (:class:`NoVideoStreamError`), fail to decode, or are truncated so that a requested timestamp lies beyond
the last decodable frame raise :class:`CorruptMediaError`; so does a still image opened as a video (a PNG or JPEG
renamed ``.mp4``: ``"not a video: a PNG image with a video file extension"``; animated GIF / APNG with two or more
frames are read as clips). PyAV's own ``av.error.*`` and ``OSError`` never escape.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from .video_info import VIDEO_EXTENSIONS, VideoInfo
from .video_reader import (  # noqa: F401 - the tunables are re-exported for reading; set them on video_reader
    END_TOLERANCE_S,
    MAX_FRAME_PIXELS,
    SEEK_MIN_GAP_S,
    SEEK_NO_INDEX_GAP_S,
    PathLike,
    Size,
    VideoReader,
)


def probe(path: PathLike) -> VideoInfo:
    """Read a video's duration, frame rate, display size and rotation (decodes only the first frame)."""
    with VideoReader(path) as clip:
        return clip.info


def sample_timestamps(
    duration: float, num_frames: int | None = 12, *, fps: float | None = None,
    start: float | None = None, end: float | None = None,
) -> np.ndarray:
    """Target times (seconds, float64, increasing) for a clip of ``duration`` seconds.

    * ``fps=None``: ``num_frames`` times at the centres of equal parts of ``[start, end)`` (TSN-style uniform
      sampling: the first and last parts are represented, the very first/last instants are not).
    * ``fps=F``: ``start + (k + 0.5) / F`` for every ``k`` inside the window; ``num_frames`` (if not None) caps the
      count by keeping an evenly spread subset.
    """
    t0 = 0.0 if start is None else float(start)
    t1 = float(duration) if end is None else min(float(end), float(duration))
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or t1 <= t0:
        raise ValueError(f"empty or invalid time window [{t0}, {t1}) for a {duration:.3f} s clip")
    if fps is None:
        if num_frames is None or num_frames < 1:
            raise ValueError("num_frames must be >= 1 when fps is not given")
        return t0 + (np.arange(num_frames) + 0.5) * (t1 - t0) / num_frames
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    n = max(1, int(math.floor((t1 - t0) * fps + 0.5)))
    ts = t0 + (np.arange(n) + 0.5) / fps
    ts = ts[ts < t1] if n > 1 else np.array([min(ts[0], (t0 + t1) / 2)])
    if num_frames is not None and len(ts) > num_frames:
        ts = ts[np.linspace(0, len(ts) - 1, num_frames).round().astype(int)]
    return ts


def sample_frames(
    path: PathLike, num_frames: int | None = 12, *, fps: float | None = None,
    start: float | None = None, end: float | None = None, size: Size = None, tolerance: float = 0.0,
) -> np.ndarray:
    """Decode frames sampled from ``path`` -> ``(N, H, W, 3)`` uint8 RGB (display orientation).

    Args:
        num_frames: frames spread uniformly over the window (or, with ``fps``, the maximum count).
        fps: sample at this rate instead (see :func:`sample_timestamps`).
        start, end: window in seconds from the first frame (default: the whole clip).
        size: ``int`` = downscale so the shorter side is at most ``size`` (never upscales);
            ``(width, height)`` = exact output size; ``None`` = native resolution.
        tolerance: seconds; any frame shown within ``tolerance`` of a target is acceptable, and the cheapest one
            is decoded (a keyframe when one lies in the window; see the module docstring). 0 = the exact frame.

    Raises:
        MediaError subclasses (see the module docstring), ``ValueError`` for an empty window or bad options.
    """
    with VideoReader(path) as clip:
        ts = sample_timestamps(clip.info.duration, num_frames, fps=fps, start=start, end=end)
        out = None
        for k, (_, arr) in enumerate(clip.frames_at(ts, size=size, tolerance=tolerance)):
            if out is None:  # filled in place: no list of frames + stacked copy (2x the memory)
                out = np.empty((len(ts), *arr.shape), dtype=np.uint8)
            out[k] = arr
    return out


def iter_frames(path: PathLike, timestamps: Sequence[float], *, size: Size = None, tolerance: float = 0.0
                ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(frame_time_s, (H, W, 3) uint8)`` for each target time (sorted ascending), one at a time.

    The streaming form of :func:`sample_frames` for callers that encode frames in batches (bounded memory for
    any number of targets). ``frame_time_s`` is the presentation time of the frame shown at the target (with
    ``tolerance``: of the frame chosen within the window, see :func:`sample_frames`).
    """
    with VideoReader(path) as clip:
        yield from clip.frames_at(np.asarray(timestamps, dtype=np.float64), size=size, tolerance=tolerance)


__all__ = ["VIDEO_EXTENSIONS", "VideoInfo", "VideoReader", "probe", "sample_frames", "sample_timestamps", "iter_frames"]
