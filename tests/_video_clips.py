"""Synthetic clips made with PyAV for the video tests: each frame shows its index in binary (8 vertical stripes,
white = bit set), so a test can tell exactly which frame the decoder returned, through lossy coding."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

BITS = 8


def index_image(i: int, w: int, h: int) -> np.ndarray:
    """(h, w, 3) uint8: stripe b (of 8, left to right) is white when bit b of ``i`` is set."""
    img = np.zeros((h, w, 3), np.uint8)
    sw = w // BITS
    for b in range(BITS):
        if (i >> b) & 1:
            img[:, b * sw : (b + 1) * sw] = 255
    return img


def frame_index(frame: np.ndarray, n: int | None = None) -> int:
    """Which synthetic frame a decoded (H, W, 3) frame is."""
    h, w = frame.shape[:2]
    sw = w // BITS
    return sum(1 << b for b in range(BITS) if frame[:, b * sw + 1 : (b + 1) * sw - 1].mean() > 128)


def make_clip(path: Path, n_frames: int = 25, fps: int = 10, size=(128, 48), *, gop: int = 5, codec: str = "mpeg4",
              pts_ms: list[int] | None = None, rotation: int | None = None, audio: bool = False,
              pattern: str = "index", faststart: bool = False, seed: int = 0,
              audio_seconds: float | None = None) -> Path:
    """Write a small clip. ``pts_ms``: explicit presentation times in milliseconds (variable frame rate).
    ``pattern="half"`` paints the left half white (orientation tests); ``"noise"`` random frames."""
    import av

    w, h = size
    opts = {"movflags": "faststart"} if faststart else {}
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        if codec == "mpeg4":
            s.codec_context.options = {"qscale": "2"}
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
            s.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i in range(n_frames):
            if pattern == "half":
                img = np.zeros((h, w, 3), np.uint8)
                img[:, : w // 2] = 255
            elif pattern == "noise":
                img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            else:
                img = index_image(i, w, h)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            _add_silence(a, c, seconds=audio_seconds or n_frames / fps)
    return path


def _add_silence(a, c, seconds: float) -> None:
    import av

    n = int(seconds * 16000 / 1024) + 1
    for i in range(n):
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        fr.sample_rate, fr.pts = 16000, i * 1024
        for p in a.encode(fr):
            c.mux(p)
    for p in a.encode():
        c.mux(p)


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    import av

    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        _add_silence(a, c, seconds)
    return path
