"""``seqtransf``: CLIP4Clip's seqTransf — frame features + learned frame-position embeddings go through a small
temporal transformer; its output is added back to the input features (residual), then mean-pooled.

Deviation from CLIP4Clip: the transformer is initialised at random (CLIP4Clip copies the first CLIP text layers)
and uses pre-norm blocks; the residual makes the head start close to meanP either way."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class SeqTransfConfig(HeadConfig):
    layers: int = 1  # temporal transformer blocks
    heads: int = 4  # attention heads; dim must be a multiple
    mlp_ratio: float = 2.0  # MLP hidden width = dim * mlp_ratio


@VIDEO_HEADS.register("seqtransf", help="CLIP4Clip seqTransf: temporal transformer + position embeddings, residual")
class SeqTransfHead(VideoHead):
    name = "seqtransf"
    Config = SeqTransfConfig

    def build(self) -> None:
        c = self.config
        self.frame_pos = nn.Parameter(torch.randn(c.max_frames, c.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, int(c.dim * c.mlp_ratio), dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.check_frames(frames)  # (B, T, D)
        y = self.transformer(x + self.frame_pos[: x.shape[1]]) + x  # residual to the input features
        return F.normalize(y.mean(dim=1), dim=-1)
