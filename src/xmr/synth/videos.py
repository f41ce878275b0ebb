"""Synthetic video retrieval set: short clips of coloured shapes, captions that need time to be understood.

Each clip is ``size`` x ``size`` pixels, ``frames`` frames at ``fps`` (default 64x64, 16 frames, 8 fps = 2 s), a
dark background, and shapes (circle, square, triangle in red, green, blue, yellow). Three kinds of clips, one
caption each, and the kind is stored in the manifest's ``type`` field:

* ``a`` (content in only some frames): a distractor shape stays the whole clip, another shape is visible only
  for ``frames // 4`` frames somewhere in the middle -> "a red circle appears briefly";
* ``b`` (temporal order): shape X is visible in the first half, shape Y in the second ->
  "a red circle appears, then a blue square";
* ``c`` (motion direction): one shape crosses the frame -> "a green square moves left".

Kinds ``b`` and ``c`` are generated as **time-reversed twins**: the second clip of a pair is the first one's
frames in reverse order ("Y, then X"; "moves right"). A twin has exactly the same set of frames, so any head that
ignores frame order (meanP) gives both clips the same embedding and cannot tell their captions apart.
Twins always land in the same split. Output: ``DIR/videos/*.mp4`` and ``DIR/captions.jsonl``
(``{"media", "captions", "split", "type", "id"}`` per line, readable by ``manifest:DIR/captions.jsonl``).

``captions=k`` (default 1) gives each clip ``k`` captions (at most 4): the one above first, then captions that each
describe *another part* of the clip, as different annotators would (kind a: the shape that stays, and the pair;
kind b: only the first or only the last shape; kind c: the shape's path in other words). They are derived from
the clip without drawing random numbers, so clips and first captions are the same for every ``captions`` value.
This is what LINAS-style linguistic association (``xmr.heads.lean``) reads: the captions of a video complement
each other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import ConfigError
from ._shapes import shape_mask

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 240), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
BACKGROUND = 30
MAX_CAPTIONS = 4


@dataclass(frozen=True)
class SynthVideoConfig:
    n: int = 120  # number of clips (kinds a, b, c in turn; b and c come in time-reversed pairs)
    seed: int = 0  # RNG seed: the same seed gives the same clips and captions
    size: int = 64  # frame side in pixels
    frames: int = 16  # frames per clip
    fps: int = 8  # frame rate of the written clip
    radius: int = 9  # half-size of a shape in pixels
    test_fraction: float = 0.3  # share of clips (pairs kept together) in the "test" split, the rest "train"
    captions: int = 1  # captions per clip (1..4): the first as always, then complementary ones (module docstring)

    def __post_init__(self):
        if self.n < 1 or self.frames < 4 or self.size < 4 * self.radius or self.fps < 1:
            raise ConfigError(f"SynthVideoConfig: need n >= 1, frames >= 4, size >= 4 * radius, fps >= 1: {self}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ConfigError(f"SynthVideoConfig: test_fraction must be in [0, 1], got {self.test_fraction}")
        if not 1 <= self.captions <= MAX_CAPTIONS:
            raise ConfigError(f"SynthVideoConfig: captions must be in 1..{MAX_CAPTIONS}, got {self.captions}")


def _mask(shape: str, cx: float, cy: float, r: int, size: int) -> np.ndarray:
    return shape_mask(shape, cx, cy, r, size, triangle_slope=0.55)


def _draw(canvas: np.ndarray, colour: str, shape: str, cx: float, cy: float, r: int) -> None:
    canvas[_mask(shape, cx, cy, r, canvas.shape[0])] = COLOURS[colour]


def _objects(rng, k: int) -> list[tuple[str, str]]:
    """k distinct (colour, shape) pairs."""
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    return [combos[i] for i in rng.choice(len(combos), size=k, replace=False)]


def _spot(rng, cfg: SynthVideoConfig) -> tuple[float, float]:
    lo, hi = cfg.radius + 1, cfg.size - cfg.radius - 1
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def _blank(cfg: SynthVideoConfig) -> np.ndarray:
    return np.full((cfg.frames, cfg.size, cfg.size, 3), BACKGROUND, dtype=np.uint8)


def _clip_transient(rng, cfg) -> tuple[np.ndarray, str]:
    (c0, s0), (c1, s1) = _objects(rng, 2)
    frames = _blank(cfg)
    p0 = _spot(rng, cfg)
    p1 = _spot(rng, cfg)
    while abs(p1[0] - p0[0]) < 2 * cfg.radius and abs(p1[1] - p0[1]) < 2 * cfg.radius:  # keep them apart
        p1 = _spot(rng, cfg)
    span = max(1, cfg.frames // 4)
    t0 = int(rng.integers(1, cfg.frames - span))
    for t in range(cfg.frames):
        _draw(frames[t], c0, s0, *p0, cfg.radius)
        if t0 <= t < t0 + span:
            _draw(frames[t], c1, s1, *p1, cfg.radius)
    return frames, [f"a {c1} {s1} appears briefly", f"a {c0} {s0} stays the whole time",
                    f"a {c0} {s0} is joined by a {c1} {s1} for a moment", f"a {c1} {s1} flashes up"]


def _clip_order(rng, cfg) -> tuple[np.ndarray, str, str]:
    (c0, s0), (c1, s1) = _objects(rng, 2)
    frames = _blank(cfg)
    p0, p1 = _spot(rng, cfg), _spot(rng, cfg)
    half = cfg.frames // 2
    for t in range(cfg.frames):
        if t < half:
            _draw(frames[t], c0, s0, *p0, cfg.radius)
        else:
            _draw(frames[t], c1, s1, *p1, cfg.radius)
    def caps(x, y):  # x shown first, then y
        return [f"a {x} appears, then a {y}", f"first there is a {x}", f"a {y} comes last",
                f"a {x} is replaced by a {y}"]

    return frames, caps(f"{c0} {s0}", f"{c1} {s1}"), caps(f"{c1} {s1}", f"{c0} {s0}")


def _clip_motion(rng, cfg) -> tuple[np.ndarray, str, str]:
    ((c, s),) = _objects(rng, 1)
    direction = str(rng.choice(list(OPPOSITE)))
    frames = _blank(cfg)
    lo, hi = cfg.radius + 1.0, cfg.size - cfg.radius - 1.0
    track = np.linspace(hi, lo, cfg.frames) if direction in ("left", "up") else np.linspace(lo, hi, cfg.frames)
    other = float(rng.uniform(lo, hi))
    for t in range(cfg.frames):
        x, y = (track[t], other) if direction in ("left", "right") else (other, track[t])
        _draw(frames[t], c, s, x, y, cfg.radius)
    def caps(d):
        return [f"a {c} {s} moves {d}", f"a {s} crosses the frame going {d}", f"something {c} slides {d}",
                f"a {c} {s} travels {d} across the screen"]

    return frames, caps(direction), caps(OPPOSITE[direction])


def write_clip(path: str | Path, frames: np.ndarray, fps: int) -> None:
    """(T, H, W, 3) uint8 RGB -> an H.264 MP4 (yuv420p, near-lossless CRF 12, every frame a keyframe)."""
    av = require("av", "video")
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height = frames.shape[2], frames.shape[1]
        st.pix_fmt = "yuv420p"
        st.options = {"crf": "12", "g": "1", "preset": "veryfast"}
        for arr in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def generate_clips(cfg: SynthVideoConfig) -> list[dict]:
    """The clips in memory: dicts with ``frames`` (T, H, W, 3) uint8, ``caption`` (the first), ``captions``
    (``cfg.captions`` of them), ``type``, ``split``, ``id``."""
    rng = np.random.default_rng(cfg.seed)
    clips: list[dict] = []
    group = 0
    kinds = "abc"
    while len(clips) < cfg.n:
        kind = kinds[group % 3]
        split = "test" if rng.random() < cfg.test_fraction else "train"
        k = cfg.captions
        if kind == "a":
            frames, caps = _clip_transient(rng, cfg)
            clips.append({"frames": frames, "caption": caps[0], "captions": caps[:k], "type": kind, "split": split})
        else:
            frames, caps, caps_rev = (_clip_order if kind == "b" else _clip_motion)(rng, cfg)
            clips.append({"frames": frames, "caption": caps[0], "captions": caps[:k], "type": kind, "split": split})
            if len(clips) < cfg.n:
                clips.append({"frames": frames[::-1].copy(), "caption": caps_rev[0], "captions": caps_rev[:k],
                              "type": kind, "split": split})
        group += 1
    for i, c in enumerate(clips):
        c["id"] = f"clip{i:05d}"
    return clips


def generate_videos(out: str | Path, n: int = 120, seed: int = 0, **options) -> Path:
    """Write ``n`` clips to ``out/videos/`` and ``out/captions.jsonl``; returns the manifest path.
    ``options`` are further :class:`SynthVideoConfig` fields (size, frames, fps, radius, test_fraction, captions)."""
    cfg = SynthVideoConfig(n=n, seed=seed, **options)
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    for c in generate_clips(cfg):
        rel = f"videos/{c['id']}.mp4"
        write_clip(out / rel, c["frames"], cfg.fps)
        lines.append(json.dumps({"media": rel, "captions": c["captions"], "split": c["split"],
                                 "type": c["type"], "id": c["id"]}))
    manifest = out / "captions.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
