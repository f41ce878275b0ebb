"""Subtitles: ``clip.srt`` / ``clip.vtt`` (or ``clip.mp4.srt`` / ``clip.mp4.vtt``, or ``clip.<lang>.srt``) next
to a video; one row per cue with its start and end (seconds), so a subtitle hit is a moment of the video.

The parser (:func:`parse_subtitles`) reads SubRip and WebVTT: cue numbers optional, ``,`` or ``.`` before the
milliseconds, hours optional in WebVTT (``mm:ss.ttt``), cue settings after the end time ignored, ``NOTE`` /
``STYLE`` / ``REGION`` blocks skipped, tags (``<i>``, ``<c.yellow>``, ``{\\an8}``) stripped. It is strict about
what it cannot trust: a malformed time line, an end before its start, or a file that is not UTF-8 raises
:class:`~xmr.errors.ExpertSkip` naming the line, and the video keeps its visual embedding.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from ..errors import ExpertSkip
from ..registries import EXPERTS
from .base import Expert, ExpertText, clean_text
from .sidecar import read_text_file

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_CUE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _seconds(h, m, s, ms) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def parse_subtitles(text: str, name: str = "subtitles") -> list[Cue]:
    """Cues of an SRT or WebVTT document (see the module docstring). Raises ValueError naming the bad line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[Cue] = []
    i = 0
    if lines and lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        i = 1
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        if line.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in line:
            while i < len(lines) and lines[i].strip():  # the block runs to the next blank line
                i += 1
            continue
        if "-->" not in line:  # a cue number or identifier: the time line must follow
            i += 1
            if i >= len(lines) or "-->" not in lines[i]:
                raise ValueError(f"{name} line {i}: expected a time line 'HH:MM:SS,mmm --> HH:MM:SS,mmm' after "
                                 f"{line[:40]!r}")
            line = lines[i].strip()
        m = _CUE.match(line)
        if m is None:
            raise ValueError(f"{name} line {i + 1}: malformed time line {line[:60]!r}")
        g = m.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        if any(int(g[j]) >= 60 for j in (2, 6)) or any(g[j - 1] is not None and int(g[j]) >= 60 for j in (1, 5)):
            raise ValueError(f"{name} line {i + 1}: seconds or minutes over 59 in {line[:60]!r}")
        if end < start:
            raise ValueError(f"{name} line {i + 1}: cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
        i += 1
        body = []
        while i < len(lines) and lines[i].strip():
            body.append(_TAG.sub("", lines[i]))
            i += 1
        t = clean_text(" ".join(body))
        if t:
            cues.append(Cue(start, end, t))
    return cues


def subtitle_paths(path: str) -> list[str]:
    """Subtitle files for the video ``path``: ``stem.srt``, ``stem.vtt``, ``path.srt``, ``path.vtt`` and
    ``stem.<lang>.srt`` / ``.vtt``, sorted, each once."""
    stem = os.path.splitext(path)[0]
    fixed = [stem + ".srt", stem + ".vtt", path + ".srt", path + ".vtt"]
    langs = sorted(glob.glob(glob.escape(stem) + ".*.srt") + glob.glob(glob.escape(stem) + ".*.vtt"))
    return list(dict.fromkeys(fixed + langs))


@EXPERTS.register("subtitles", help="subtitle cues (.srt / .vtt next to a video), each a timed moment")
class SubtitleExpert(Expert):
    name = "subtitles"
    version = "1"
    media_types = ("video",)

    @dataclass
    class Config:
        max_bytes: int = 5_000_000  # a subtitle file larger than this is skipped

    def inputs(self, path: str) -> list[str]:
        return [p for p in subtitle_paths(path) if os.path.isfile(p)]

    def extract(self, path: str, media_type: str) -> list[ExpertText]:
        rows = []
        for p in self.inputs(path):
            text = read_text_file(p, self.config.max_bytes, "subtitles")
            try:
                cues = parse_subtitles(text, os.path.basename(p))
            except ValueError as e:
                raise ExpertSkip(path, f"subtitles: {e}") from None
            rows += [ExpertText(c.text, "cue", c.start, c.end) for c in cues]
        return rows
