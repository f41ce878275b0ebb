"""``ts2net``: TS2-Net (Liu et al., ECCV 2022) on frozen patch tokens (B, T, 1 + P, W).

* token shift: TS2-Net shifts *whole* patch tokens (all channels) inside the attention of the last two ViT blocks
  (the residual stream stays unshifted). The encoder here is frozen, so the shift is applied once to its output
  tokens, where a whole-token shift only relabels which frame a token belongs to (measured: it loses the motion
  signal, see docs/video_heads.md). The default is therefore ``shift_mode="channels"`` (TokShift / TSM style: a
  ``shift_fraction`` slice of the channels of every token from frame t-1, the next slice from frame t+1,
  zero-filled at the ends), which mixes each token with its temporal neighbours; ``shift_mode="tokens"`` is
  TS2-Net's whole-token pattern (see :func:`token_shift`);
* token selection: an MLP scores every patch token (given its frame's class token), the top ``select_k`` patch
  tokens per frame are kept next to the class token. ``selection="perturbed"`` is TS2-Net's differentiable top-k:
  the perturbed maximum of Berthet et al. (2020) as used for patch selection by Cordonnier et al. (2021) —
  in training, the kept tokens are ``E_Z[Y(s + sigma Z)] @ patches`` with ``Y`` the (k, P) one-hot indicators of the
  top-k of the noisy scores (in patch order), estimated with ``perturb_samples`` draws of ``Z ~ N(0, I)``, and the
  scores' gradient is the estimator ``E_Z[Y(s + sigma Z) Z^T] / sigma`` (:func:`perturbed_topk`); in evaluation the
  hard top-k. ``selection="softmax"`` (default, the head's original choice, kept so saved heads load unchanged):
  the kept tokens are scaled by their softmax-normalised score (deterministic; the scorer gets gradient through
  those weights);
* a temporal transformer (CLIP4Clip seqTransf, as in TS2-Net) over all kept tokens of all frames (+ frame-position
  embeddings), plus a residual to its input; each frame's class-token output is projected from token width W to the
  embedding width ``dim``, L2-normalised, and the frames are mean-pooled (meanP). TS2-Net instead weights the frames
  by their similarity to the text (a query-dependent score); this head stays query-independent (one (B, D) vector).

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

SHIFT_MODES = ("tokens", "channels")
SELECTIONS = ("softmax", "perturbed")


@dataclass(frozen=True)
class TS2NetConfig(HeadConfig):
    width: int = 64  # token width W of the encoder's patch tokens (TinyConfig.width)
    shift_mode: str = "channels"  # "channels": a channel slice of every token (TokShift/TSM); "tokens": TS2-Net's
    shift_fraction: float = 0.25  # share of channels (or, "tokens", of patch tokens) shifted each way (TS2-Net: 1/7)
    select_k: int = 4  # patch tokens kept per frame next to the class token (TS2-Net: 3)
    layers: int = 1  # temporal transformer blocks over the kept tokens
    heads: int = 4  # attention heads; width must be a multiple
    mlp_ratio: float = 2.0  # MLP hidden width = width * mlp_ratio
    selection: str = "softmax"  # "softmax": score-weighted hard top-k; "perturbed": TS2-Net's perturbed top-k
    perturb_samples: int = 500  # noise draws of the perturbed top-k (TS2-Net's code: 500)
    perturb_sigma: float = 0.05  # noise scale of the perturbed top-k (TS2-Net's code: 0.05)

    def __post_init__(self):
        super().__post_init__()
        if self.width % self.heads:
            raise ConfigError(f"TS2NetConfig: width {self.width} is not a multiple of heads {self.heads}")
        if not 0.0 <= self.shift_fraction <= 0.5:
            raise ConfigError(f"TS2NetConfig: shift_fraction must be in [0, 0.5], got {self.shift_fraction}")
        if self.shift_mode not in SHIFT_MODES:
            raise ConfigError(f"TS2NetConfig: shift_mode must be one of {SHIFT_MODES}, got {self.shift_mode!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"TS2NetConfig: selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.perturb_samples < 1 or self.perturb_sigma <= 0:
            raise ConfigError("TS2NetConfig: perturb_samples must be >= 1 and perturb_sigma > 0")


def token_shift(tokens: torch.Tensor, fraction: float, mode: str = "channels") -> torch.Tensor:
    """(B, T, 1 + P, W) -> same shape, a new tensor.

    ``mode="channels"`` (default): the first ``fraction`` of the channels of every token come from frame t-1, the
    next ``fraction`` from frame t+1 (zeros past the ends), the rest stay.

    ``mode="tokens"`` (TS2-Net): with stride ``s = max(2, round(1 / fraction))``, patch ``p`` (0-based, after the
    class token) takes the whole token of frame t-1 when ``p % s == 0`` and of frame t+1 when ``p % s == s // 2``;
    frames without such a neighbour keep their own token, the class token stays. (``fraction=1/7`` on a 7x7 grid
    moves tokens 1, 8, ..., 43 backward in time and 4, 11, ..., 46 forward, counting the class token as 0, as
    TS2-Net's released code does.)
    """
    if mode not in SHIFT_MODES:
        raise ConfigError(f"token_shift: mode must be one of {SHIFT_MODES}, got {mode!r}")
    out = tokens.clone()
    if fraction <= 0 or tokens.shape[1] < 2:
        return out
    if mode == "tokens":
        s = max(2, round(1 / fraction))
        p = torch.arange(tokens.shape[2] - 1, device=tokens.device)
        back, fwd = 1 + p[p % s == 0], 1 + p[p % s == s // 2]  # token indices (class token = 0)
        out[:, 1:, back] = tokens[:, :-1, back]
        out[:, :-1, fwd] = tokens[:, 1:, fwd]
        return out
    n = int(tokens.shape[-1] * fraction)
    if n == 0:
        return out
    out[:, 1:, :, :n] = tokens[:, :-1, :, :n]
    out[:, :1, :, :n] = 0
    out[:, :-1, :, n: 2 * n] = tokens[:, 1:, :, n: 2 * n]
    out[:, -1:, :, n: 2 * n] = 0
    return out


class _PerturbedTopK(torch.autograd.Function):
    # The (S, ..., k, P) one-hot indicators are never built: the forward counts the sampled indices with a
    # scatter-add, the backward gathers <grad, Y> at them (same values, far less memory and time).
    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int, samples: int, sigma: float):
        noise = torch.randn((samples, *scores.shape), dtype=scores.dtype, device=scores.device)  # (S, ..., P)
        top = (scores.unsqueeze(0) + sigma * noise).topk(k, dim=-1).indices.sort(dim=-1).values  # (S, ..., k)
        p = scores.shape[-1]
        idx = top.reshape(samples, -1, k).permute(1, 2, 0)  # (M, k, S)
        counts = torch.zeros((idx.shape[0], k, p), dtype=scores.dtype, device=scores.device)
        counts.scatter_add_(2, idx, torch.ones_like(idx, dtype=scores.dtype))
        ctx.save_for_backward(top, noise)
        ctx.sigma = sigma
        return (counts / samples).reshape(*scores.shape[:-1], k, p)

    @staticmethod
    def backward(ctx, grad):  # grad (..., k, P) -> d scores (..., P): E[<grad, Y> Z] / sigma
        top, noise = ctx.saved_tensors
        g = grad.unsqueeze(0).expand(top.shape[0], *grad.shape).gather(-1, top.unsqueeze(-1)).sum((-2, -1))  # (S, ...)
        return (g.unsqueeze(-1) * noise).mean(0) / ctx.sigma, None, None, None


def perturbed_topk(scores: torch.Tensor, k: int, samples: int = 500, sigma: float = 0.05) -> torch.Tensor:
    """(..., P) scores -> (..., k, P) soft indicators ``E_Z[Y(scores + sigma Z)]``: row j is the expected one-hot of
    the j-th selected index in patch order (Berthet et al. 2020, Eq. 1 and Prop. 3.1's gradient estimator)."""
    if not 1 <= k <= scores.shape[-1]:
        raise ConfigError(f"perturbed_topk: k must be in [1, {scores.shape[-1]}], got {k}")
    return _PerturbedTopK.apply(scores, k, samples, sigma)


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
                                           activation="gelu", batch_first=True, norm_first=True)
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
        if self.config.selection == "perturbed":
            if self.training:
                ind = perturbed_topk(logits, k, self.config.perturb_samples, self.config.perturb_sigma)
            else:
                ind = F.one_hot(logits.topk(k, dim=-1).indices.sort(dim=-1).values, patches.shape[2]).to(patches.dtype)
            return torch.cat([cls, ind @ patches], dim=2)  # (B, T, k, P) @ (B, T, P, W)
        weights = logits.softmax(dim=-1) * patches.shape[2]  # mean 1 over a frame's patches
        top = logits.topk(k, dim=-1).indices  # (B, T, k)
        idx = top.unsqueeze(-1).expand(-1, -1, -1, patches.shape[-1])
        kept = patches.gather(2, idx) * weights.gather(2, top).unsqueeze(-1)
        return torch.cat([cls, kept], dim=2)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = token_shift(self.check_frames(frames), c.shift_fraction, c.shift_mode)  # (B, T, 1 + P, W)
        x = self.select(x)  # (B, T, 1 + k, W)
        b, t, n, w = x.shape
        y = self.transformer((x + self.frame_pos[:t, None]).reshape(b, t * n, w)) + x.reshape(b, t * n, w)
        frame_out = y.view(b, t, n, w)[:, :, 0]  # (B, T, W): each frame's class-token output
        v = F.normalize(self.proj(self.ln(frame_out)), dim=-1)  # (B, T, D)
        return F.normalize(v.mean(dim=1), dim=-1)
