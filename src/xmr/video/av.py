"""Videos with sound for the audio-visual models (``eao:DIR``, ``eclipse:DIR``; :mod:`xmr.encoders.av`): one file's
frames and sound track -> the model's tokens -> one vector per video and per segment.

The same function (:func:`span_tokens`) makes the tokens that ``xmr train-av`` trains on and the ones ``xmr index``
embeds, so a model sees a file the same way in both:

* **frames**: ``frames`` target times spread uniformly (TSN-style centres) over the span, decoded with PyAV at a
  shorter side of at most :data:`FRAME_SIZE` pixels, each an area-averaged ``side`` x ``side`` colour thumbnail
  plus its relative time (:func:`xmr.heads.eao.frame_tokens`);
* **sound**: the file's first audio track resampled to 16 kHz mono (:func:`xmr.media.audio.load_audio`, the first
  :data:`MAX_AUDIO_SECONDS`), the span's samples cut into ``chunks`` log-mel chunks, each its mean and std plus its
  relative time (:func:`xmr.heads.eao.audio_tokens`).

A file without an audio track is embedded from its frames alone (both models define that: Everything at Once
fuses any subset of its modalities, ECLIPSE without audio is its own video-only pathway); so is a span past the
first :data:`MAX_AUDIO_SECONDS` or shorter than the chunks need. Undecodable audio is a media error: the file is
skipped with the reason, as for undecodable frames.

Segments are the index's sliding windows (:class:`~xmr.video.embed.VideoIndexConfig` ``window`` / ``stride``),
each embedded from its own frames and sound, so a moment can be found by its sound; all the target times of a
file are decoded in one pass.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError

SR = 16000  # sample rate of the audio tokens (Hz)
FRAME_SIZE = 64  # frames are decoded with their shorter side at most this (the thumbnails average it away)
MAX_AUDIO_SECONDS = 600.0  # audio decoded per file (memory: 38 MB of float32 samples)
N_MELS = 40


def _side(video_dim: int) -> int:
    side = int(round(((video_dim - 1) / 3) ** 0.5))
    if side * side * 3 + 1 != video_dim:
        raise ConfigError(f"a model whose frame tokens have {video_dim} features is not one of colour thumbnails "
                          "(side * side * 3 + 1)")
    return side


def _audio_ok(n_samples: int, chunks: int) -> bool:
    """Enough samples for ``chunks`` log-mel chunks of at least 2 frames each (25 ms window, 10 ms hop)."""
    return n_samples >= int(SR * (0.025 + 0.010 * (2 * chunks)))


def span_tokens(frames: np.ndarray, wave: np.ndarray | None, config) -> tuple[np.ndarray, np.ndarray | None]:
    """(video tokens (k, video_dim), audio tokens (m, audio_dim) or None) of one span's decoded frames
    (k, H, W, 3) uint8 and its samples (None: no sound) for a model ``config`` (fields ``video_dim``,
    ``audio_dim``, ``frames``, ``chunks``)."""
    from ..heads.eao import audio_tokens, frame_tokens

    v = frame_tokens(frames, side=_side(config.video_dim), max_tokens=config.frames)
    if wave is None or not _audio_ok(len(wave), config.chunks):
        return v, None
    if config.audio_dim != 2 * N_MELS + 1:
        raise ConfigError(f"a model whose audio tokens have {config.audio_dim} features is not one of {N_MELS}-band "
                          f"log-mel chunks ({2 * N_MELS + 1})")
    return v, audio_tokens(wave, SR, chunks=config.chunks, n_mels=N_MELS)


def read_spans(path: str | os.PathLike, config, spans=None):
    """Decode ``path`` once: per span ``(start, end)`` seconds its tokens (:func:`span_tokens`). ``spans``: a list,
    a function of the file's duration returning one, or None (the whole file). Returns (info, spans, [(video
    tokens, audio tokens or None), ...], frames decoded). Raises :class:`~xmr.errors.MediaError` for a bad file
    (frames or sound)."""
    from ..media.audio import NoAudioStreamError, load_audio
    from ..media.video import VideoReader, sample_timestamps

    k = int(config.frames)
    if k < 1 or int(config.chunks) < 1:
        raise ConfigError(f"an audio-visual model needs frames >= 1 and chunks >= 1, got {config.frames}, "
                          f"{config.chunks}")
    with VideoReader(path) as reader:
        info = reader.info
        if spans is None:
            spans = [(0.0, float(info.duration))]
        elif callable(spans):
            spans = spans(float(info.duration))
        targets = [sample_timestamps(info.duration, k, start=s, end=e) for s, e in spans]
        every = np.unique(np.concatenate(targets))
        decoded = {float(t): arr for t, (_, arr) in zip(every, reader.frames_at(every, size=FRAME_SIZE))}
    try:
        wave = load_audio(path, SR, max_seconds=MAX_AUDIO_SECONDS)
    except NoAudioStreamError:
        wave = None
    out = []
    for (s, e), ts in zip(spans, targets):
        frames = np.stack([decoded[float(t)] for t in ts])
        seg = None
        if wave is not None and e <= MAX_AUDIO_SECONDS:
            seg = wave[int(round(s * SR)):int(round(e * SR))]
        out.append(span_tokens(frames, seg, config))
    return info, spans, out, len(every)


def av_settings(encoder) -> dict:
    """How an audio-visual encoder reads a file (recorded in the index, shown by ``xmr info``)."""
    return {"model": encoder.spec.partition(":")[0], "frames": int(encoder.config.frames),
            "chunks": int(encoder.config.chunks), "frame_size": FRAME_SIZE, "sample_rate": SR,
            "max_audio_seconds": MAX_AUDIO_SECONDS}


def encode_spans(encoder, tokens: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """(N, dim) vectors of spans' tokens through ``encoder.encode_av``: the spans with sound in one batch, those
    without in another (the model's video-only pathway)."""
    out = np.zeros((len(tokens), encoder.dim), np.float32)
    for with_sound in (True, False):
        idx = [i for i, (_, a) in enumerate(tokens) if (a is not None) == with_sound]
        if idx:
            v = np.stack([tokens[i][0] for i in idx])
            a = np.stack([tokens[i][1] for i in idx]) if with_sound else None
            out[idx] = encoder.encode_av(v, a)
    return out


def embed_av_video(path: str | os.PathLike, encoder, cfg):
    """:class:`~xmr.video.embed.VideoEmbedding` of one file for an audio-visual encoder
    (``encoder.capabilities.sound``): the whole file's vector and one per index window (``cfg``: a
    :class:`~xmr.video.embed.VideoIndexConfig`; windows grow for long files as in
    :func:`~xmr.video.embed.embed_video`)."""
    from .embed import VideoEmbedding, segment_windows

    def spans(duration: float) -> list[tuple[float, float]]:
        scale = max(1.0, duration * cfg.fps / cfg.max_frames)
        return [(0.0, duration)] + segment_windows(duration, cfg.window * scale, cfg.stride * scale)

    info, spans, toks, n = read_spans(path, encoder.config, spans)
    vecs = encode_spans(encoder, toks)
    segs = [(s, e, vecs[j]) for j, (s, e) in enumerate(spans) if j > 0]
    return VideoEmbedding(vecs[0], segs, info.width, info.height, info.duration, n, None)


__all__ = ["FRAME_SIZE", "MAX_AUDIO_SECONDS", "SR", "av_settings", "embed_av_video", "encode_spans", "read_spans", "span_tokens"]
