"""What a video file's headers and streams say, for :mod:`xmr.media.video_reader`.

Holds :class:`VideoInfo` (what :func:`~xmr.media.video.probe` returns), ``VIDEO_EXTENSIONS``, and the reader's small
header helpers: the display rotation (:func:`_rotation_of`), Matroska's ``DURATION`` tag (:func:`_parse_hms`), the
image kinds named when a still image is opened as a video (``_IMAGE_CODEC_NAMES``), and the words of the errors for
a file the demuxer refused (:func:`_open_failure`) or a PyAV error (:func:`_msg`). No PyAV import here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})

#: codec -> the image kind named in the "not a video" error of a still image opened as a video
_IMAGE_CODEC_NAMES = {"png": "PNG", "apng": "PNG", "mjpeg": "JPEG", "jpegls": "JPEG-LS", "jpeg2000": "JPEG 2000",
                      "bmp": "BMP", "tiff": "TIFF", "webp": "WebP", "gif": "GIF", "qoi": "QOI", "ppm": "PPM",
                      "pgm": "PGM", "pam": "PAM", "sgi": "SGI", "dds": "DDS", "exr": "EXR", "psd": "PSD",
                      "hdr": "HDR", "xbm": "XBM", "xpm": "XPM", "svg": "SVG", "pcx": "PCX", "photocd": "Photo CD"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`~xmr.media.video.probe` learns from a file's headers (and its first frame)."""

    duration: float  # seconds, of the video stream
    fps: float  # average frame rate (frames / s); variable-rate clips report their average
    width: int  # display width (after rotation)
    height: int  # display height (after rotation)
    rotation: int  # counter-clockwise degrees applied to decoded frames: 0, 90, 180 or 270
    has_audio: bool
    num_frames_estimate: int  # from the container header, else duration * fps

    def to_dict(self) -> dict:
        return asdict(self)


def _rotation_of(frame, stream) -> int:
    """Counter-clockwise rotation in {0, 90, 180, 270} from the frame's display matrix or the ``rotate`` tag."""
    rot = None
    try:
        r = frame.rotation
        if r:
            rot = float(r)
    except Exception:  # noqa: BLE001 - older PyAV: no VideoFrame.rotation
        rot = None
    if rot is None:
        tag = (stream.metadata or {}).get("rotate")
        try:
            rot = -float(tag) if tag is not None else 0.0  # the legacy tag is clockwise
        except ValueError:
            rot = 0.0
    return int(round(rot / 90.0)) % 4 * 90


def _parse_hms(s: str | None) -> float | None:
    """``"00:00:14.013000000"`` -> 14.013; None when absent or malformed."""
    try:
        h, m, sec = str(s).split(":")
        d = int(h) * 3600 + int(m) * 60 + float(sec)
    except (ValueError, TypeError):
        return None
    return d if math.isfinite(d) and d > 0 else None


def _open_failure(path: Path) -> str:
    """Why a file the demuxer refused is bad, as far as its first bytes tell."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp":  # an MP4/MOV that starts right but whose index ('moov' box) is missing or cut off
        return "truncated or incomplete MP4/MOV file (no readable 'moov' index)"
    return "not a readable video container"


def _msg(e: BaseException) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return s.strip() or type(e).__name__


__all__ = ["VIDEO_EXTENSIONS", "VideoInfo"]
