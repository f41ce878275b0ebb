"""Videos for whole-clip models (``encoder.capabilities.clips``: a ``trained:DIR`` that ``xmr train --mode full``
wrote on a video data set, e.g. MILES pre-training): the model embeds a clip at once from ``encoder.clip_frames``
frames, so a span is read as the model was trained on it and turned into one vector.

* **frames**: :func:`clip_plan`, ``FramePlan.uniform(clip_frames, size=None)``: ``clip_frames`` frames at the centres
  of equal parts of the span (TSN-style, the times :func:`xmr.media.video.sample_frames` takes in training), decoded
  at native resolution as in training, then preprocessed by the model (``encode_clips``: the same
  ``clip_pixels`` as its training data), so ``xmr eval`` reproduces the run's own per-epoch scores;
* **spans**: ``xmr eval`` embeds each gallery item (the whole video, or a moment's ``start``/``end`` window);
  ``xmr index`` (:func:`embed_clip_video`) embeds each whole video as one vector (``--type video``) and each index
  window (the frame models' window plan: ``--segment S --segment-stride R``, :func:`~xmr.video.embed.segment_windows`,
  windows grown by the fps plan's factor for videos longer than ``max_frames / fps`` s) as its own clip of
  ``clip_frames`` uniform frames inside the window, stored as that window's segment vector (``--type moment``).
  Cost: ``(1 + windows) x clip_frames`` frames per video (fewer where times coincide), decoded in one forward pass
  over the file and encoded ``batch_size`` clips at a time. Indexes built before windows were embedded hold no
  segments: :func:`refuse_moments` says to re-index.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError, MediaError
from .plan import FramePlan

WHY_NO_MOMENTS = ("this index was built with a whole-clip model before its windows were embedded: it holds one vector "
                  "per video and no per-window segments")


def clip_plan(encoder) -> FramePlan:
    """``clip_frames`` uniform frames over the span, native resolution (as training decodes them)."""
    return FramePlan.uniform(int(encoder.clip_frames), size=None)


def clip_settings(encoder, windows: bool = False) -> dict:
    """How a whole-clip model reads a span (recorded in eval fingerprints and the index, shown by ``xmr info``);
    ``windows``: the index's segments are windows embedded as clips (the window / stride are recorded beside)."""
    return {"model": encoder.spec, "frames": int(encoder.clip_frames), "frame_size": None,
            "sampling": "uniform over the clip or the item's start/end window (TSN centres)",
            "segments": (f"one per index window, embedded as a clip of {int(encoder.clip_frames)} uniform frames "
                         "inside it" if windows else "none (one vector per video)")}


def read_clip(clip, encoder) -> list:
    """The ``clip_frames`` decoded frames (PIL images) of ``clip`` (a path, or an item with ``.media`` and optional
    ``.start`` / ``.end``). Raises :class:`~xmr.errors.MediaError` for a bad file or a window outside it."""
    from .features import decode_frames

    return decode_frames(clip, clip_plan(encoder))[1]


def clip_window_times(duration: float, encoder, cfg) -> tuple[np.ndarray, list[tuple[float, float, np.ndarray]]]:
    """The whole video's ``clip_frames`` times and, per index window ``(start, end)``, its own ``clip_frames`` times:
    ``(whole (F,), [(start, end, (F,)), ...])``. Windows: ``segment_windows(duration, window * scale, stride *
    scale)`` with ``scale`` the fps plan's factor for long videos (``cfg.plan``), as frame models' windows."""
    from .embed import segment_windows

    plan = clip_plan(encoder)
    whole, _ = plan.times(duration)
    _, scale = cfg.plan.times(duration)
    wins = [(s, e, plan.times(duration, s, e)[0]) for s, e in segment_windows(duration, cfg.window * scale,
                                                                                 cfg.stride * scale)]
    return whole, wins


def embed_clip_video(path: str | os.PathLike, encoder, cfg=None, *, batch_size: int = 16):
    """:class:`~xmr.video.embed.VideoEmbedding` of one file for a whole-clip encoder: the whole video's vector and one
    segment per index window of ``cfg`` (a :class:`~xmr.video.embed.VideoIndexConfig`; default settings when None),
    each embedded from ``clip_frames`` uniform frames inside the window, exactly as :func:`read_clip` of that window
    reads them. The file is decoded once: the sorted union of all windows' times, in one forward pass; a window's
    clip is encoded as soon as its last frame is decoded (``batch_size`` clips at a time) and frames no later window
    needs are dropped, so memory holds about one window's frames plus the whole video's ``clip_frames``."""
    from ..media.video import VideoReader
    from .embed import VideoEmbedding, VideoIndexConfig
    from .features import _check_count

    cfg = VideoIndexConfig() if cfg is None else cfg
    with VideoReader(path) as reader:
        info = reader.info
        try:
            whole, wins = clip_window_times(info.duration, encoder, cfg)
        except ValueError as e:
            raise MediaError(reader.path, str(e)) from None
        times = np.unique(np.concatenate([whole] + [t for _, _, t in wins]))  # sorted, each time decoded once
        whole_ix = np.searchsorted(times, whole)
        win_ix = [np.searchsorted(times, t) for _, _, t in wins]
        keep = set(whole_ix.tolist())
        frames: dict[int, np.ndarray] = {}
        vecs: list[np.ndarray] = []
        pending: list[list[np.ndarray]] = []
        nxt = 0  # the next window not yet queued
        got = 0
        for k, (_, arr) in enumerate(reader.frames_at(times, size=None)):
            frames[k] = arr
            got += 1
            while nxt < len(wins) and win_ix[nxt][-1] <= k:  # every frame of window nxt is decoded
                pending.append([frames[i] for i in win_ix[nxt]])
                nxt += 1
            if len(pending) >= batch_size:
                vecs.append(np.asarray(encoder.encode_clips(pending), np.float32))
                pending = []
            low = int(win_ix[nxt][0]) if nxt < len(wins) else k + 1  # frames before it: no later window reads them
            for i in [i for i in frames if i < low and i not in keep]:
                del frames[i]
    _check_count(path, got, len(times))
    if pending:
        vecs.append(np.asarray(encoder.encode_clips(pending), np.float32))
    seg_vecs = np.concatenate(vecs) if vecs else np.zeros((0, encoder.dim), np.float32)
    vec = np.asarray(encoder.encode_clips([[frames[i] for i in whole_ix]]), np.float32)[0]
    segs = [(s, e, seg_vecs[j]) for j, (s, e, _) in enumerate(wins)]
    return VideoEmbedding(vec, segs, info.width, info.height, info.duration, len(times), None)


def refuse_moments(encoder, reader) -> None:
    """ConfigError for ``--type moment`` on an index a whole-clip model built without segments (before windows were
    embedded); a current index of such a model has its windows' vectors and is searched as any other."""
    if getattr(getattr(encoder, "capabilities", None), "clips", False) and reader.count_segments() == 0:
        raise ConfigError(f"--type moment needs per-window segments, and {WHY_NO_MOMENTS} ({encoder.spec}): re-index "
                          "it (xmr index DIR --model ... into a new --index) to embed each window as a clip, or "
                          "search whole videos with --type video")


def refuse_image_query(encoder) -> None:
    """ConfigError for an image query to a whole-clip model (it has no image tower: ``capabilities.images`` False)."""
    caps = getattr(encoder, "capabilities", None)
    if getattr(caps, "clips", False) and not getattr(caps, "images", False):
        raise ConfigError(f"an image query needs an image encoder, and {encoder.spec} embeds whole video clips, not "
                          "images: search its videos with a text query (--type video), or index the images with an "
                          "image model in another index")


__all__ = ["WHY_NO_MOMENTS", "clip_plan", "clip_settings", "clip_window_times", "embed_clip_video", "read_clip",
           "refuse_image_query", "refuse_moments"]
