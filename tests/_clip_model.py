"""A whole-clip video model for the contract tests (``trained:DIR`` of mode ``tiny_video``, random weights, 2 frames
per clip) and the check of what such an encoder embeds instead of images (``Capabilities.clips``)."""
from __future__ import annotations

import numpy as np
import pytest


def trained_tiny_video(request, tmp):
    """ENCODER_BUILDERS entry: ("trained", DIR) of a random tiny space-time model."""
    from xmr.encoders.tiny_video import TinyVideoConfig
    from xmr.train.video_data import TinyVideoModel

    TinyVideoModel(TinyVideoConfig({"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2,
                                    "dim": 16, "context_length": 48, "seed": 3}, 2)).save(tmp / "v", {})
    return ("trained", str(tmp / "v"))


def clip_vectors(enc, image_paths) -> np.ndarray:
    """A clips-only encoder refuses images with its message and embeds still clips of them (each image repeated
    ``clip_frames`` times), a clip's vector independent of its batch."""
    from xmr.errors import ConfigError
    from xmr.media.image import load_image

    assert enc.capabilities.clips and isinstance(enc.clip_frames, int) and enc.clip_frames >= 1
    with pytest.raises(ConfigError, match="not images"):
        enc.encode_images(image_paths)
    clips = [[load_image(p)] * enc.clip_frames for p in image_paths]
    out = enc.encode_clips(clips)
    np.testing.assert_allclose(enc.encode_clips(clips[:1]), out[:1], atol=1e-5)
    return out
