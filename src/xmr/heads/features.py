"""Frozen features for training / scoring video heads: sample frames once, encode them once.

* :func:`frame_features` -> (N_v, T, D) L2-normalised frame embeddings (any encoder);
* :func:`frame_tokens` -> (N_v, T, 1 + P, W) patch tokens (encoders with ``encode_image_tokens``: ``tiny``,
  CLIP-style ``hf:`` ViTs).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError


def item_frames(item, num_frames: int, size: int | None = 224) -> list[Image.Image]:
    """``num_frames`` frames spread uniformly over an item's video (or its ``start``/``end`` window), as PIL images
    whose shorter side is at most ``size``. Raises MediaError (bad file) or ValueError (empty window)."""
    from ..media.video import sample_frames

    arr = sample_frames(item.media, num_frames, start=getattr(item, "start", None), end=getattr(item, "end", None),
                        size=size)
    return [Image.fromarray(a) for a in arr]


def frame_features(encoder, items: Sequence, num_frames: int = 8, size: int | None = 224) -> torch.Tensor:
    """Items with ``.media`` (video path) and optional ``.start`` / ``.end`` -> (N, T, D) float32. Decoding errors
    propagate (MediaError); no placeholder frames."""
    out = np.zeros((len(items), num_frames, encoder.dim), dtype=np.float32)
    for i, it in enumerate(items):
        out[i] = encoder.encode_images(item_frames(it, num_frames, size), show_progress=False)
    return torch.from_numpy(out)


def frame_tokens(encoder, items: Sequence, num_frames: int = 8, size: int | None = 224) -> torch.Tensor:
    """Items -> (N, T, 1 + P, W) patch tokens. Raises ConfigError for encoders without patch tokens."""
    if not hasattr(encoder, "encode_image_tokens"):
        raise ConfigError(
            f"encoder {getattr(encoder, 'spec', type(encoder).__name__)!r} does not expose patch tokens "
            "(encode_image_tokens); ts2net needs them — use `tiny`, a CLIP-style hf: ViT, or another head")
    return torch.stack([encoder.encode_image_tokens(item_frames(it, num_frames, size)).float().cpu() for it in items])
