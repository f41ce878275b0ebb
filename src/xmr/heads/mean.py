"""``mean``: CLIP4Clip's meanP — the video is the mean of its L2-normalised frame features (no parameters but the
similarity scale). Order-blind: any permutation of the frames gives the same embedding."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@VIDEO_HEADS.register("mean", help="CLIP4Clip meanP: mean of normalised frame features")
class MeanHead(VideoHead):
    name = "mean"
    Config = HeadConfig

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        frames = F.normalize(self.check_frames(frames), dim=-1)  # (B, T, D)
        return F.normalize(frames.mean(dim=1), dim=-1)
