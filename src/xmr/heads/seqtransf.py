"""``seqtransf``: CLIP4Clip's seqTransf — frame features + learned frame-position embeddings go through a small
temporal transformer; its output is added back to the input features (residual), each frame is L2-normalised, and
the frames are mean-pooled (the same pooling as meanP).

Matches CLIP4Clip (``modules/modeling.py``, seqTransf branch of ``_loose_similarity``): the residual adds the input
features *without* the position embeddings; the blocks are CLIP residual attention blocks — pre-norm (LayerNorm
before attention and before the MLP, residual around each), no final LayerNorm, no dropout; per-frame
normalisation before the mean. Deviations: the transformer is initialised at random (CLIP4Clip copies the first
CLIP text layers and CLIP's text position embeddings), the MLP uses exact GELU (CLIP: QuickGELU, its sigmoid
approximation) and a smaller default width (``mlp_ratio`` 2, CLIP 4), and there are no padding-frame masks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class SeqTransfConfig(HeadConfig):
    layers: int = 1  # temporal transformer blocks (CLIP4Clip: 4)
    heads: int = 4  # attention heads; dim must be a multiple
    mlp_ratio: float = 2.0  # MLP hidden width = dim * mlp_ratio (CLIP blocks: 4)


@VIDEO_HEADS.register("seqtransf", help="CLIP4Clip seqTransf: temporal transformer + position embeddings, residual")
class SeqTransfHead(VideoHead):
    name = "seqtransf"
    Config = SeqTransfConfig

    def build(self) -> None:
        c = self.config
        self.frame_pos = nn.Parameter(torch.randn(c.max_frames, c.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, int(c.dim * c.mlp_ratio), dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.check_frames(frames)  # (B, T, D)
        y = self.transformer(x + self.frame_pos[: x.shape[1]]) + x  # residual to the input features
        return F.normalize(F.normalize(y, dim=-1).mean(dim=1), dim=-1)  # meanP over the (normalised) outputs
