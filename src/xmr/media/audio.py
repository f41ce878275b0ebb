"""Audio tracks: decode with PyAV, resample with PyAV's resampler, log-mel features in numpy.

:func:`load_audio` returns a file's first audio stream as mono float32 samples in [-1, 1] at ``sr`` Hz (PyAV's
``AudioResampler``: any input rate / layout / sample format -> ``flt`` mono at ``sr``), at most ``max_seconds``
of it. Errors are :class:`~xmr.errors.MediaError` subclasses with a reason a user can act on:

* no audio stream -> :class:`NoAudioStreamError` ("has no audio track");
* a file PyAV cannot open, or whose audio packets do not decode -> :class:`~xmr.errors.CorruptMediaError`;
* a missing / empty file -> :class:`~xmr.errors.UnreadableMediaError`;
* an audio stream that decodes to nothing (or only silence-free zero samples) -> ``CorruptMediaError``.

:func:`log_mel` is the usual short-time feature: a Hann-windowed STFT (``win`` s windows, ``hop`` s hop), the power
spectrum projected on ``n_mels`` triangular filters spaced evenly on the HTK mel scale
``mel(f) = 2595 log10(1 + f / 700)``, then ``log(x + 1e-6)``. Output (frames, n_mels) float32.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CorruptMediaError, UnreadableMediaError


class NoAudioStreamError(CorruptMediaError):
    """The file holds no audio stream (a silent video, an image)."""


def _av():
    from .._deps import require

    return require("av", "video", "av (PyAV)")


def load_audio(path, sr: int = 16000, max_seconds: float | None = 60.0) -> np.ndarray:
    """Mono float32 samples of ``path``'s first audio stream at ``sr`` Hz, the first ``max_seconds`` of it (None:
    all of it). Raises the media errors listed in the module docstring."""
    av = _av()
    p = Path(path)
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise UnreadableMediaError(p, f"cannot read the file ({e.strerror or e})") from None
    if size == 0:
        raise UnreadableMediaError(p, "the file is empty")
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise CorruptMediaError(p, f"cannot open it as a media file ({_msg(e)})") from None
    try:
        if not container.streams.audio:
            raise NoAudioStreamError(p, "has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sr))
        limit = None if max_seconds is None else int(round(float(max_seconds) * sr))
        chunks: list[np.ndarray] = []
        n = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    a = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    chunks.append(a)
                    n += a.size
                if limit is not None and n >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    a = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    chunks.append(a)
                    n += a.size
        except (av.error.FFmpegError, ValueError) as e:
            if n == 0:
                raise CorruptMediaError(p, f"its audio track does not decode ({_msg(e)})") from None
            # a truncated tail: keep what decoded (the decoder's own behaviour for a cut file)
    finally:
        container.close()
    if n == 0:
        raise CorruptMediaError(p, "its audio track decodes to no samples")
    wave = np.concatenate(chunks)
    if limit is not None:
        wave = wave[:limit]
    if not np.all(np.isfinite(wave)):
        raise CorruptMediaError(p, "its audio track decodes to non-finite samples")
    return np.clip(wave, -1.0, 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, centres evenly spaced on the HTK mel scale."""
    fmax = sr / 2 if fmax is None else fmax

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    pts = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, freqs.size), dtype=np.float64)
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0.0, None)
    return fb.astype(np.float32)


def log_mel(wave: np.ndarray, sr: int = 16000, n_mels: int = 40, win: float = 0.025, hop: float = 0.010
            ) -> np.ndarray:
    """(frames, n_mels) float32 log-mel spectrogram of mono ``wave`` (module docstring). A wave shorter than one
    window is zero-padded to one window."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n_win = int(round(win * sr))
    n_hop = max(1, int(round(hop * sr)))
    n_fft = 1 << (n_win - 1).bit_length()
    if wave.size < n_win:
        wave = np.pad(wave, (0, n_win - wave.size))
    n_frames = 1 + (wave.size - n_win) // n_hop
    idx = np.arange(n_win)[None, :] + n_hop * np.arange(n_frames)[:, None]
    frames = wave[idx] * np.hanning(n_win).astype(np.float32)[None, :]
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank(sr, n_fft, n_mels).T
    return np.log(mel + 1e-6).astype(np.float32)


def _msg(e: BaseException) -> str:
    s = str(getattr(e, "strerror", None) or e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__


__all__ = ["NoAudioStreamError", "load_audio", "log_mel", "mel_filterbank"]
