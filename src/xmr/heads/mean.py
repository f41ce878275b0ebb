"""``mean``: CLIP4Clip's meanP — the video is the mean of its L2-normalised frame features (no parameters but the
similarity scale). Order-blind: any permutation of the frames gives the same embedding.

``proj=True`` adds a learned linear map (initialised to identity) on each frame before pooling: still order-blind,
but with a trainable video side, which makes it the fair order-blind control for the trained heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class MeanConfig(HeadConfig):
    proj: bool = False  # learn a per-frame linear map (identity init) before pooling


@VIDEO_HEADS.register("mean", help="CLIP4Clip meanP: mean of normalised frame features")
class MeanHead(VideoHead):
    name = "mean"
    Config = MeanConfig

    def build(self) -> None:
        if self.config.proj:
            self.proj = nn.Linear(self.config.dim, self.config.dim)
            nn.init.eye_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        frames = F.normalize(self.check_frames(frames), dim=-1)  # (B, T, D)
        if self.config.proj:
            frames = self.proj(frames)
        return F.normalize(frames.mean(dim=1), dim=-1)
