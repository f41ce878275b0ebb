"""``ts2net``: TS2-Net (Liu et al., ECCV 2022) on frozen patch tokens (B, T, 1 + P, W).

* token shift: a fraction of the channels of every patch token is shifted one frame forward and the same fraction
  one frame back (zero-filled at the ends), so each token mixes in its neighbours' features — TS2-Net shifts inside
  the ViT blocks; here it is applied once to the frozen encoder's output tokens (the encoder stays frozen);
* token selection: an MLP scores every patch token (given its frame's class token), the top ``select_k`` patch
  tokens per frame are kept next to the class token; TS2-Net makes top-k differentiable with perturbed maximum; here
  the kept tokens are scaled by their softmax-normalised score (the scorer gets gradient through those weights);
* a temporal transformer over all kept tokens of all frames (+ frame-position embeddings), mean-pooled and projected
  from token width W to the embedding width ``dim``.

Needs an encoder that exposes patch tokens (``tiny``: ``encode_image_tokens``); a (B, T, D) input raises ConfigError.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class TS2NetConfig(HeadConfig):
    width: int = 64  # token width W of the encoder's patch tokens (TinyConfig.width)
    shift_fraction: float = 0.25  # fraction of channels shifted each way (TS2-Net: 1/4 of the channels)
    select_k: int = 4  # patch tokens kept per frame (next to the class token)
    layers: int = 1  # temporal transformer blocks over the kept tokens
    heads: int = 4  # attention heads; width must be a multiple
    mlp_ratio: float = 2.0  # MLP hidden width = width * mlp_ratio

    def __post_init__(self):
        super().__post_init__()
        if self.width % self.heads:
            raise ConfigError(f"TS2NetConfig: width {self.width} is not a multiple of heads {self.heads}")
        if not 0.0 <= self.shift_fraction <= 0.5:
            raise ConfigError(f"TS2NetConfig: shift_fraction must be in [0, 0.5], got {self.shift_fraction}")


def token_shift(tokens: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, T, N, W) -> same shape: the first ``fraction`` of channels come from frame t-1, the next ``fraction`` from
    frame t+1 (zeros past the ends), the rest stay. Returns a new tensor."""
    w = tokens.shape[-1]
    n = int(w * fraction)
    if n == 0 or tokens.shape[1] < 2:
        return tokens.clone()
    out = tokens.clone()
    out[:, 1:, :, :n] = tokens[:, :-1, :, :n]
    out[:, :1, :, :n] = 0
    out[:, :-1, :, n: 2 * n] = tokens[:, 1:, :, n: 2 * n]
    out[:, -1:, :, n: 2 * n] = 0
    return out


@VIDEO_HEADS.register("ts2net", help="TS2-Net: token shift + token selection over frame patch tokens")
class TS2NetHead(VideoHead):
    name = "ts2net"
    Config = TS2NetConfig
    patch_tokens = True

    def build(self) -> None:
        c = self.config
        self.scorer = nn.Sequential(nn.LayerNorm(2 * c.width), nn.Linear(2 * c.width, c.width), nn.GELU(),
                                    nn.Linear(c.width, 1))
        self.frame_pos = nn.Parameter(torch.randn(c.max_frames, c.width) * 0.02)
        layer = nn.TransformerEncoderLayer(c.width, c.heads, int(c.width * c.mlp_ratio), dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(c.width)
        self.proj = nn.Linear(c.width, c.dim, bias=False)

    def check_frames(self, frames: torch.Tensor) -> torch.Tensor:
        frames = super().check_frames(frames)
        if frames.shape[-1] != self.config.width:
            raise ConfigError(f"ts2net: token width {frames.shape[-1]} != config width {self.config.width}")
        if frames.shape[2] < 2:
            raise ConfigError("ts2net: tokens must hold a class token and at least one patch token")
        return frames

    def select(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 1 + P, W) -> (B, T, 1 + k, W): class token + the k best-scored patch tokens, score-weighted."""
        cls, patches = tokens[:, :, :1], tokens[:, :, 1:]  # (B, T, 1, W), (B, T, P, W)
        k = min(self.config.select_k, patches.shape[2])
        logits = self.scorer(torch.cat([patches, cls.expand_as(patches)], dim=-1)).squeeze(-1)  # (B, T, P)
        weights = logits.softmax(dim=-1) * patches.shape[2]  # mean 1 over a frame's patches
        top = logits.topk(k, dim=-1).indices  # (B, T, k)
        idx = top.unsqueeze(-1).expand(-1, -1, -1, patches.shape[-1])
        kept = patches.gather(2, idx) * weights.gather(2, top).unsqueeze(-1)
        return torch.cat([cls, kept], dim=2)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        x = token_shift(self.check_frames(frames), self.config.shift_fraction)  # (B, T, 1 + P, W)
        x = self.select(x)  # (B, T, 1 + k, W)
        b, t, n, w = x.shape
        x = (x + self.frame_pos[:t, None]).reshape(b, t * n, w)
        y = self.transformer(x).mean(dim=1)  # (B, W)
        return F.normalize(self.proj(self.ln(y)), dim=-1)
