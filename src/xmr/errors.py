"""Exception hierarchy. Every error xmr raises on purpose derives from :class:`XmrError`.

The CLI turns an ``XmrError`` into a one-line message and a non-zero exit code, never a traceback.
"""
from __future__ import annotations


class XmrError(Exception):
    """Base class of all deliberate xmr errors (message is meant for the user)."""


class ConfigError(XmrError, ValueError):
    """A spec, option or config value is invalid (unknown name, bad format, ...)."""


class MissingExtraError(XmrError, ImportError):
    """An optional dependency is not installed; the message names the extra / pip command."""


class ModelUnavailableError(XmrError):
    """Model weights cannot be found locally and cannot be downloaded (offline, bad id, ...)."""


class MediaError(XmrError):
    """A media file cannot be used. ``path`` and ``reason`` are kept for skip reports."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnreadableMediaError(MediaError):
    """The file cannot be opened or read (permissions, missing, I/O error, empty file)."""


class CorruptMediaError(MediaError):
    """The file is not a decodable image/video, or is truncated/corrupt."""


class NoVideoStreamError(CorruptMediaError):
    """A video file (by extension) holds no video stream (audio-only, subtitles-only, empty container)."""


class MediaTooLargeError(MediaError):
    """The file exceeds the configured size or pixel limit (e.g. a decompression bomb)."""


class ExpertSkip(XmrError):
    """An expert (OCR, sidecar text, subtitles) cannot use one file: that expert is skipped for that file with
    ``reason`` (recorded in the index, shown by ``xmr info``); the item itself is still indexed."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class XmrIndexError(XmrError):
    """An on-disk index is missing, incompatible (other model spec) or locked."""

__all__ = [
    "XmrError",
    "ConfigError",
    "MissingExtraError",
    "ModelUnavailableError",
    "MediaError",
    "UnreadableMediaError",
    "CorruptMediaError",
    "NoVideoStreamError",
    "ExpertSkip",
    "MediaTooLargeError",
    "XmrIndexError",
]
