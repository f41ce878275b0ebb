"""``prototypes``: K learned prototype queries cross-attend over the frames (+ frame-position embeddings) and give
K embeddings per video (a multi-vector video, in the spirit of TMVM-style multi-prototype video models); a text
is matched to its best prototype: sim(text, video) = max_k cos(text, proto_k(video))."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class PrototypeConfig(HeadConfig):
    num_prototypes: int = 4  # K video embeddings per video
    heads: int = 4  # attention heads of the prototype cross-attention; dim must be a multiple


@VIDEO_HEADS.register("prototypes", help="K learned prototypes attend over frames; text matches its best one")
class PrototypeHead(VideoHead):
    name = "prototypes"
    multi_vector = True
    Config = PrototypeConfig

    def build(self) -> None:
        c = self.config
        self.queries = nn.Parameter(torch.randn(c.num_prototypes, c.dim) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(c.max_frames, c.dim) * 0.02)
        self.ln = nn.LayerNorm(c.dim)
        self.attn = nn.MultiheadAttention(c.dim, c.heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, 2 * c.dim), nn.GELU(),
                                 nn.Linear(2 * c.dim, c.dim))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, K, D) L2-normalised prototypes."""
        x = self.check_frames(frames)
        b, t, _ = x.shape
        kv = self.ln(x + self.frame_pos[:t])
        q = self.queries.expand(b, -1, -1)
        y, _ = self.attn(q, kv, kv, need_weights=False)  # (B, K, D)
        y = y + F.normalize(x, dim=-1).mean(dim=1, keepdim=True)  # start from meanP
        return F.normalize(y + self.mlp(y), dim=-1)

    def similarity(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        text = F.normalize(self.check_text(text), dim=-1)
        protos = self.embed_video(frames)  # (B_v, K, D)
        return torch.einsum("ad,bkd->abk", text, protos).amax(dim=-1)
