"""Which frames of a clip are decoded: :class:`FramePlan`, the sampling choice recorded with results.

Two rules, one object:

* ``FramePlan.fps_grid(fps=1, min_frames=8, max_frames=1800, size=336)`` — the index's rule. ``n = round(d * fps)``
  frames for a clip (or window) of ``d`` seconds, clamped to ``[min_frames, max_frames]``, at the centres of ``n``
  equal parts. A long clip (``d * fps > max_frames``) is sampled sparser, at ``max_frames / d`` frames per second,
  and ``times`` also returns the factor ``scale = d * fps / max_frames`` by which segment windows grow, so a segment
  still pools about ``window * fps`` frames.
* ``FramePlan.uniform(n, size=224)`` — the train-head / eval rule: ``n`` frames at the centres of ``n`` equal parts
  of the clip or of its ``start``/``end`` window (TSN-style; the same times as
  :func:`xmr.media.video.sample_timestamps` and therefore :func:`~xmr.media.video.sample_frames`).

``frame_size`` is the shorter side (pixels) frames are downscaled to before encoding (never upscaled; ``None``:
native resolution).

``snap`` (default 0: exact) lets each target take any frame shown within ``snap`` grid steps of it (0.5 = anywhere
in its own part, TSN's view of a segment), which lets the decoder take a keyframe instead of decoding up to the
exact instant (:func:`xmr.media.video.sample_frames`'s ``tolerance``): on long files sampled sparsely, one decoded
keyframe per target. Recorded in ``to_dict`` only when set, so exact plans keep their fingerprint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

#: sampling rules a plan can name
SAMPLINGS = ("fps", "uniform")


@dataclass(frozen=True)
class FramePlan:
    """How frames are sampled from a clip and how large they are decoded. Build with :meth:`fps_grid` or
    :meth:`uniform`; invalid values raise :class:`~xmr.errors.ConfigError`."""

    sampling: str  # "fps" (a grid at `fps` frames per second) or "uniform" (`num_frames` centres of equal parts)
    num_frames: int | None = None  # uniform: frames per clip / window
    fps: float | None = None  # fps: frames per second of video (an upper bound, see max_frames)
    min_frames: int | None = None  # fps: short clips get at least this many frames
    max_frames: int | None = None  # fps: at most this many; longer clips are sampled sparser (scale > 1)
    frame_size: int | None = 224  # decoded frames' shorter side is at most this many pixels; None = native
    snap: float = 0.0  # a target may take any frame shown within snap * (grid step) of it; 0 = the exact frame

    def __post_init__(self):
        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        bad = []
        if self.sampling == "uniform":
            if not (is_int(self.num_frames) and self.num_frames >= 1):
                bad.append(f"num_frames must be an integer >= 1, got {self.num_frames!r}")
            if any(v is not None for v in (self.fps, self.min_frames, self.max_frames)):
                bad.append("fps / min_frames / max_frames only apply to sampling='fps'")
        elif self.sampling == "fps":
            if not (isinstance(self.fps, (int, float)) and not isinstance(self.fps, bool)
                    and math.isfinite(self.fps) and self.fps > 0):
                bad.append(f"fps must be a number > 0, got {self.fps!r}")
            if not (is_int(self.min_frames) and self.min_frames >= 1):
                bad.append(f"min_frames must be an integer >= 1, got {self.min_frames!r}")
            elif not (is_int(self.max_frames) and self.max_frames >= self.min_frames):
                bad.append(f"max_frames must be an integer >= min_frames ({self.min_frames}), got {self.max_frames!r}")
            if self.num_frames is not None:
                bad.append("num_frames only applies to sampling='uniform' (the fps grid uses min/max_frames)")
        else:
            bad.append(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.frame_size is not None and not (is_int(self.frame_size) and self.frame_size >= 1):
            bad.append(f"frame_size must be an integer >= 1 or None, got {self.frame_size!r}")
        if not (isinstance(self.snap, (int, float)) and not isinstance(self.snap, bool)
                and math.isfinite(self.snap) and 0.0 <= self.snap <= 0.5):
            bad.append(f"snap must be a number in [0, 0.5] (grid steps), got {self.snap!r}")
        if bad:
            raise ConfigError("invalid frame sampling plan: " + "; ".join(bad))

    # ---- presets ----------------------------------------------------------------------------------------------
    @classmethod
    def fps_grid(cls, fps: float = 1.0, min_frames: int = 8, max_frames: int = 1800, size: int | None = 336,
                 snap: float = 0.0) -> "FramePlan":
        """The index's rule (defaults: 1 fps, 8..1800 frames, shorter side 336, exact frames)."""
        return cls("fps", fps=fps, min_frames=min_frames, max_frames=max_frames, frame_size=size, snap=snap)

    @classmethod
    def uniform(cls, n: int, size: int | None = 224, snap: float = 0.0) -> "FramePlan":
        """``n`` frames spread uniformly over the clip or window (train-head / eval; shorter side 224)."""
        return cls("uniform", num_frames=n, frame_size=size, snap=snap)

    def tolerance(self, times: np.ndarray) -> float:
        """Seconds a frame may be away from its target under ``snap``: ``snap`` times the grid step of ``times``
        (this plan's targets; a single target gets 0, the exact frame)."""
        times = np.asarray(times, dtype=np.float64)
        if not self.snap or len(times) < 2:
            return 0.0
        return float(self.snap * np.min(np.diff(times)))

    # ---- sampling ---------------------------------------------------------------------------------------------
    def times(self, duration: float, start: float | None = None, end: float | None = None
              ) -> tuple[np.ndarray, float]:
        """Target times (seconds from the first frame, float64, increasing) and the segment-window scale factor.

        ``start``/``end`` restrict sampling to the window ``[start, min(end, duration))``; an empty or invalid
        window raises ``ValueError`` (as :func:`~xmr.media.video.sample_timestamps`). ``scale`` is 1.0 except for an
        fps grid over a span longer than ``max_frames / fps`` seconds."""
        if self.sampling == "uniform":
            from ..media.video import sample_timestamps

            return sample_timestamps(duration, self.num_frames, start=start, end=end), 1.0
        if start is None and end is None:
            return _fps_grid(float(duration), self.fps, self.min_frames, self.max_frames)
        t0 = 0.0 if start is None else float(start)
        t1 = float(duration) if end is None else min(float(end), float(duration))
        if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or t1 <= t0:
            raise ValueError(f"empty or invalid time window [{t0}, {t1}) for a {duration:.3f} s clip")
        ts, scale = _fps_grid(t1 - t0, self.fps, self.min_frames, self.max_frames)
        return t0 + ts, scale

    def to_dict(self) -> dict:
        """The fields that apply to this rule (JSON-able), e.g. ``{"sampling": "uniform", "num_frames": 12,
        "frame_size": 224}`` (plus ``"snap"`` when it is not 0)."""
        if self.sampling == "uniform":
            d = {"sampling": "uniform", "num_frames": int(self.num_frames), "frame_size": _opt_int(self.frame_size)}
        else:
            d = {"sampling": "fps", "fps": float(self.fps), "min_frames": int(self.min_frames),
                 "max_frames": int(self.max_frames), "frame_size": _opt_int(self.frame_size)}
        if self.snap:
            d["snap"] = float(self.snap)
        return d


def _opt_int(v) -> int | None:
    return None if v is None else int(v)


def _fps_grid(duration: float, fps: float, min_frames: int, max_frames: int) -> tuple[np.ndarray, float]:
    """The index's grid over ``[0, duration)``: (times (n,), scale). Kept bit-for-bit as xmr has always indexed."""
    n = duration * fps
    if n > max_frames:
        scale = n / max_frames
        n = max_frames
    else:
        scale = 1.0
    n = int(min(max_frames, max(min_frames, math.floor(n + 0.5))))
    return (np.arange(n) + 0.5) * duration / n, scale
