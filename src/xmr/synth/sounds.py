"""Synthetic clips with sound: a picture (one coloured shape) and a sound track of two sound events, captions that
are about the sound only, the picture only, or both.

Sound events (16 kHz mono, each 0.8 s, a 20 ms fade in / out), five distinct timbres:

=========== ==========================================================================================
``beep``    "a high beep": a 1760 Hz sine
``hum``     "a low hum": a 110 Hz tone with its 2nd and 3rd harmonics
``chirp``   "a rising chirp": a linear sweep 400 -> 3200 Hz
``hiss``    "a noise burst": white noise
``knock``   "a knocking": a train of 8 decaying 600 Hz clicks
=========== ==========================================================================================

A clip is ``seconds`` long (default 2 s): event one in the first half, event two (another one) in the second. Its
picture is one static shape (colour x shape) on a dark background with a little pixel noise. Captions:
``sound`` "a high beep then a low hum", ``picture`` "a red circle", ``both`` "a red circle with a high beep then a
low hum". The manifest line holds all three (``captions`` is ``[both, sound, picture]``), plus ``events``.

Written as H.264 + AAC in MP4 (``write_av_clip``, PyAV), so the audio expert reads it as it reads any video; the
waveforms are also returned in memory (:func:`generate_sound_clips`) to train the audio tower without encoding.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import ConfigError
from ._shapes import shape_mask

SR = 16000
EVENTS = {"beep": "a high beep", "hum": "a low hum", "chirp": "a rising chirp", "hiss": "a noise burst",
          "knock": "a knocking"}
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 240), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")


def event_wave(name: str, seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """One sound event of ``seconds`` as float32 samples (amplitude about 0.5), faded in and out."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    if name == "beep":
        w = np.sin(2 * np.pi * 1760 * t)
    elif name == "hum":
        w = (np.sin(2 * np.pi * 110 * t) + 0.5 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 330 * t)) / 1.8
    elif name == "chirp":
        f0, f1 = 400.0, 3200.0
        w = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
    elif name == "hiss":
        w = rng.uniform(-1.0, 1.0, n)
    elif name == "knock":
        w = np.zeros(n)
        period = max(1, n // 8)
        k = np.arange(min(period, int(0.06 * sr)))
        click = np.sin(2 * np.pi * 600 * k / sr) * np.exp(-k / (0.01 * sr))
        for s in range(0, n - k.size, period):
            w[s:s + k.size] += click
    else:
        raise ConfigError(f"unknown sound event {name!r}; known: {', '.join(EVENTS)}")
    fade = min(n // 2, int(0.02 * sr))
    env = np.ones(n)
    if fade:
        env[:fade] = np.linspace(0, 1, fade)
        env[-fade:] = np.linspace(1, 0, fade)
    return (0.5 * w * env).astype(np.float32)


def sound_track(events: tuple[str, str], seconds: float, rng: np.random.Generator, sr: int = SR,
                noise: float = 0.01) -> np.ndarray:
    """Two events, one per half of ``seconds`` (each 0.4 x the length, 0.05 x the length in), plus faint noise."""
    n = int(round(seconds * sr))
    wave = rng.normal(0.0, noise, n).astype(np.float32)
    ev = 0.4 * seconds
    for i, name in enumerate(events):
        s = int(round((i * 0.5 + 0.05) * seconds * sr))
        w = event_wave(name, ev, rng, sr)
        wave[s:s + w.size] += w[: n - s]
    return np.clip(wave, -1.0, 1.0)


def sound_caption(events: tuple[str, str]) -> str:
    return f"{EVENTS[events[0]]} then {EVENTS[events[1]]}"


@dataclass(frozen=True)
class SynthSoundConfig:
    n: int = 60  # clips
    seed: int = 0
    seconds: float = 2.0  # clip length
    size: int = 64  # frame side
    fps: int = 8
    radius: int = 12
    test_fraction: float = 0.5

    def __post_init__(self):
        if self.n < 1 or self.seconds < 0.5 or self.size < 4 * self.radius or self.fps < 1:
            raise ConfigError(f"SynthSoundConfig: need n >= 1, seconds >= 0.5, size >= 4 * radius, fps >= 1: {self}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ConfigError(f"SynthSoundConfig: test_fraction must be in [0, 1], got {self.test_fraction}")


def generate_sound_clips(cfg: SynthSoundConfig) -> list[dict]:
    """Clips in memory: ``frames`` (T, H, W, 3) uint8, ``audio`` float32 at 16 kHz, ``events``, ``sound``,
    ``picture``, ``both`` captions, ``split``, ``id``."""
    rng = np.random.default_rng(cfg.seed)
    names = list(EVENTS)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    t = max(2, int(round(cfg.seconds * cfg.fps)))
    clips = []
    for i in range(cfg.n):
        a, b = rng.choice(len(names), size=2, replace=False)
        events = (names[a], names[b])
        colour, shape = combos[int(rng.integers(len(combos)))]
        frame = np.full((cfg.size, cfg.size, 3), 30, dtype=np.uint8)
        lo, hi = cfg.radius + 1, cfg.size - cfg.radius - 1
        cx, cy = rng.uniform(lo, hi, 2)
        frame[shape_mask(shape, cx, cy, cfg.radius, cfg.size, triangle_slope=0.55)] = COLOURS[colour]
        frames = np.repeat(frame[None], t, axis=0)
        frames = np.clip(frames.astype(np.int16) + rng.integers(-4, 5, frames.shape), 0, 255).astype(np.uint8)
        snd = sound_caption(events)
        pic = f"a {colour} {shape}"
        clips.append({"frames": frames, "audio": sound_track(events, cfg.seconds, rng), "events": list(events),
                      "sound": snd, "picture": pic, "both": f"{pic} with {snd}",
                      "split": "test" if rng.random() < cfg.test_fraction else "train", "id": f"sound{i:05d}"})
    return clips


def write_av_clip(path: str | Path, frames: np.ndarray | None, fps: int, audio: np.ndarray | None,
                  sr: int = SR, gop: int = 1) -> None:
    """(T, H, W, 3) uint8 frames (H.264, yuv420p, a keyframe every ``gop`` frames) and / or mono float32 audio
    (AAC, 16 kHz) into one MP4 / MKV."""
    av = require("av", "video")
    with av.open(str(path), "w") as out:
        vs = aus = None
        if frames is not None:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": "18", "g": str(int(gop)), "preset": "veryfast"}
        if audio is not None:
            aus = out.add_stream("aac", rate=sr)
            aus.layout = "mono"
        if vs is not None:
            for arr in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if aus is not None:
            a = np.asarray(audio, dtype=np.float32).reshape(-1)
            step = 1024
            for k, s in enumerate(range(0, a.size, step)):
                chunk = a[s:s + step]
                fr = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                fr.sample_rate = sr
                fr.pts = s
                for pkt in aus.encode(fr):
                    out.mux(pkt)
            for pkt in aus.encode(None):
                out.mux(pkt)


def generate_sound_videos(out: str | Path, n: int = 60, seed: int = 0, **options) -> Path:
    """Write ``n`` clips to ``out/videos/*.mp4`` (H.264 + AAC) and ``out/captions.jsonl``; returns the manifest."""
    cfg = SynthSoundConfig(n=n, seed=seed, **options)
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    for c in generate_sound_clips(cfg):
        rel = f"videos/{c['id']}.mp4"
        write_av_clip(out / rel, c["frames"], cfg.fps, c["audio"])
        lines.append(json.dumps({"media": rel, "captions": [c["both"], c["sound"], c["picture"]],
                                 "sound": c["sound"], "picture": c["picture"], "events": c["events"],
                                 "split": c["split"], "type": "sound", "id": c["id"]}))
    manifest = out / "captions.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


#: in the long clips, a shape's colour always comes with the same sound (what ECLIPSE's audio can stand in for)
COLOUR_SOUND = {"red": "beep", "green": "hum", "blue": "chirp", "yellow": "knock"}


def generate_long_clips(n: int = 100, seed: int = 0, segments: int = 3, segment_seconds: float = 4.0,
                        visible_seconds: float = 1.0, fps: int = 4, size: int = 32) -> list[dict]:
    """Long clips for sparse-vs-dense sampling: ``segments`` segments of ``segment_seconds``; in each, a circle of
    one colour (distinct colours per clip) is visible for only ``visible_seconds`` at a random moment, and the
    colour's sound (:data:`COLOUR_SOUND`) plays exactly then. Caption: "red then blue then green" (the picture
    only). A few uniformly sampled frames usually miss the shapes; the audio track does not."""
    rng = np.random.default_rng(seed)
    colours = list(COLOUR_SOUND)
    total = segments * segment_seconds
    t_frames = int(round(total * fps))
    n_audio = int(round(total * SR))
    out = []
    for i in range(n):
        order = [colours[j] for j in rng.choice(len(colours), size=segments, replace=False)]
        frames = np.full((t_frames, size, size, 3), 30, np.uint8)
        wave = rng.normal(0, 0.01, n_audio).astype(np.float32)
        r = size // 4
        for k, col in enumerate(order):
            start = k * segment_seconds + rng.uniform(0, segment_seconds - visible_seconds)
            f0, f1 = int(np.ceil(start * fps)), int(np.floor((start + visible_seconds) * fps))
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            m = shape_mask("circle", cx, cy, r, size, triangle_slope=0.55)
            for f in range(f0, min(f1 + 1, t_frames)):
                frames[f][m] = COLOURS[col]
            w = event_wave(COLOUR_SOUND[col], visible_seconds, rng)
            s = int(start * SR)
            wave[s:s + w.size] += w[: n_audio - s]
        out.append({"frames": frames, "audio": np.clip(wave, -1, 1), "caption": " then ".join(order),
                    "split": "test" if rng.random() < 0.5 else "train", "id": f"long{i:05d}"})
    return out
