"""Videos for whole-clip models (``encoder.capabilities.clips``: a ``trained:DIR`` that ``xmr train --mode full``
wrote on a video data set, e.g. MILES pre-training): the model embeds a clip at once from ``encoder.clip_frames``
frames, so a span is read as the model was trained on it and turned into one vector.

* **frames**: :func:`clip_plan`, ``FramePlan.uniform(clip_frames, size=None)``: ``clip_frames`` frames at the centres
  of equal parts of the span (TSN-style, the times :func:`xmr.media.video.sample_frames` takes in training), decoded
  at native resolution as in training, then preprocessed by the model (``encode_clips``: the same
  ``clip_pixels`` as its training data), so ``xmr eval`` reproduces the run's own per-epoch scores;
* **spans**: ``xmr eval`` embeds each gallery item (the whole video, or a moment's ``start``/``end`` window);
  ``xmr index`` embeds each whole video as one vector and stores **no segments**: such a model has no frame
  features to pool into moments, so ``--type moment`` searches are refused on its indexes (:func:`refuse_moments`).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError
from .plan import FramePlan

WHY_NO_MOMENTS = ("a whole-clip model embeds each video as one vector (its clip_frames frames spread over the whole "
                  "file) and its index holds no per-window segments")


def clip_plan(encoder) -> FramePlan:
    """``clip_frames`` uniform frames over the span, native resolution (as training decodes them)."""
    return FramePlan.uniform(int(encoder.clip_frames), size=None)


def clip_settings(encoder) -> dict:
    """How a whole-clip model reads a span (recorded in eval fingerprints and the index, shown by ``xmr info``)."""
    return {"model": encoder.spec, "frames": int(encoder.clip_frames), "frame_size": None,
            "sampling": "uniform over the clip or the item's start/end window (TSN centres)",
            "segments": "none (one vector per video)"}


def read_clip(clip, encoder) -> list:
    """The ``clip_frames`` decoded frames (PIL images) of ``clip`` (a path, or an item with ``.media`` and optional
    ``.start`` / ``.end``). Raises :class:`~xmr.errors.MediaError` for a bad file or a window outside it."""
    from .features import decode_frames

    return decode_frames(clip, clip_plan(encoder))[1]


def embed_clip_video(path: str | os.PathLike, encoder, cfg=None):
    """:class:`~xmr.video.embed.VideoEmbedding` of one file for a whole-clip encoder: one vector for the whole video,
    no segments (``cfg`` is accepted for the index's call and unused: windows do not apply)."""
    from ..media.video import VideoReader
    from .embed import VideoEmbedding
    from .features import _check_count, window_times

    plan = clip_plan(encoder)
    with VideoReader(path) as reader:
        info = reader.info
        times, _ = window_times(plan, reader, None, None)
        frames = [arr for _, arr in reader.frames_at(times, size=plan.frame_size)]
    _check_count(path, len(frames), len(times))
    vec = np.asarray(encoder.encode_clips([frames]), np.float32)[0]
    return VideoEmbedding(vec, [], info.width, info.height, info.duration, len(frames), None)


def refuse_moments(encoder) -> None:
    """ConfigError for ``--type moment`` with a whole-clip model."""
    if getattr(getattr(encoder, "capabilities", None), "clips", False):
        raise ConfigError(f"--type moment needs per-window segments, and {WHY_NO_MOMENTS} ({encoder.spec}): search "
                          "whole videos with --type video, or index with a frame encoder (e.g. the default model) "
                          "for moments")


def refuse_image_query(encoder) -> None:
    """ConfigError for an image query to a whole-clip model (it has no image tower: ``capabilities.images`` False)."""
    caps = getattr(encoder, "capabilities", None)
    if getattr(caps, "clips", False) and not getattr(caps, "images", False):
        raise ConfigError(f"an image query needs an image encoder, and {encoder.spec} embeds whole video clips, not "
                          "images: search its videos with a text query (--type video), or index the images with an "
                          "image model in another index")


__all__ = ["WHY_NO_MOMENTS", "clip_plan", "clip_settings", "embed_clip_video", "read_clip", "refuse_image_query",
           "refuse_moments"]
