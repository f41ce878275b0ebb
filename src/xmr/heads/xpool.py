"""``xpool``: X-Pool (Gorti et al., CVPR 2022) — the text attends over the frames, so each (text, video) pair gets
its own video embedding: softmax(q(text) · k(frames) / sqrt(d / heads)) weighted values, multi-head, then an output
projection, layer norm, a residual linear (with dropout) and a final layer norm; similarity = cosine of the text and
its own view of the video.

Matches X-Pool's ``modules/transformer.py`` layer for layer (identity-initialised q/k/v/out and residual linear with
zero biases, one head by default, no frame positions). Deviation: X-Pool normalises text and frames with one shared
LayerNorm; here each side has its own (``ln_text``, ``ln_frames``; equal at initialisation).

Cost: exhaustive scoring is O(B_t · B_v · T · D) (every text re-pools every video); nothing can be precomputed per
video beyond k/v. :func:`rerank` keeps it affordable at search time: candidates come from a query-independent
embedding (:meth:`XPoolHead.candidate_embedding`: X-Pool with uniform attention; one matrix product), and only the
top ``k`` videos per text are re-scored exactly."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class XPoolConfig(HeadConfig):
    heads: int = 1  # attention heads (X-Pool uses one); dim must be a multiple
    text_chunk: int = 256  # texts scored at once in similarity() (bounds the (chunk, B_v, T) attention memory)
    dropout: float = 0.0  # dropout on the residual linear branch while training (X-Pool trains with 0.3)

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"XPoolConfig: dropout must be in [0, 1), got {self.dropout}")


@VIDEO_HEADS.register("xpool", help="X-Pool: text-conditioned attention over frames (query-dependent)")
class XPoolHead(VideoHead):
    name = "xpool"
    Config = XPoolConfig
    query_independent = False

    def build(self) -> None:
        d = self.config.dim
        self.ln_text, self.ln_frames = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln_out = nn.LayerNorm(d)
        self.mlp = nn.Linear(d, d)
        self.drop = nn.Dropout(self.config.dropout)
        self.ln_final = nn.LayerNorm(d)
        for lin in (self.q, self.k, self.v, self.o, self.mlp):  # X-Pool initialises to identity, zero bias
            nn.init.eye_(lin.weight)
            nn.init.zeros_(lin.bias)

    def pool(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B_t, D), (B_v, T, D) -> (B_t, B_v, D) text-conditioned video embeddings (unnormalised)."""
        h = self.config.heads
        bt, (bv, t, d) = text.shape[0], frames.shape
        q = self.q(self.ln_text(text)).view(bt, h, d // h)  # (B_t, h, d/h)
        f = self.ln_frames(frames)
        k = self.k(f).view(bv, t, h, d // h)  # (B_v, T, h, d/h)
        v = self.v(f).view(bv, t, h, d // h)
        att = torch.einsum("ahc,bthc->abht", q, k) / (d // h) ** 0.5  # (B_t, B_v, h, T)
        att = att.softmax(dim=-1)
        pooled = torch.einsum("abht,bthc->abhc", att, v).reshape(bt, bv, d)  # (B_t, B_v, D)
        x = self.ln_out(self.o(pooled))
        return self.ln_final(x + self.drop(self.mlp(x)))

    def candidate_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """(B_v, T, D) -> (B_v, D) L2-normalised: X-Pool with **uniform** attention over the frames (the view of a
        query that attends equally to every frame). Query-independent, so it can be stored in an index, and in the
        same space as X-Pool's own outputs — a better first stage for a trained head than meanP of the raw frames
        (benchmarks/xpool_two_stage.py)."""
        f = self.ln_frames(self.check_frames(frames))
        x = self.ln_out(self.o(self.v(f).mean(dim=1)))
        return F.normalize(self.ln_final(x + self.drop(self.mlp(x))), dim=-1)

    def embed_video_for(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B_t, D), (B_v, T, D) -> (B_t, B_v, D) L2-normalised: each text's own view of each video."""
        return F.normalize(self.pool(self.check_text(text), self.check_frames(frames)), dim=-1)

    def similarity(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Exhaustive (B_t, B_v) cosine similarities, texts in chunks of ``text_chunk``."""
        text, frames = self.check_text(text), self.check_frames(frames)
        out = []
        for s in range(0, text.shape[0], self.config.text_chunk):
            tx = text[s: s + self.config.text_chunk]
            v = F.normalize(self.pool(tx, frames), dim=-1)  # (b, B_v, D)
            out.append(torch.einsum("ad,abd->ab", F.normalize(tx, dim=-1), v))
        return torch.cat(out)


@torch.no_grad()
def rerank(head: XPoolHead, text: torch.Tensor, frames: torch.Tensor, k: int = 10,
           candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage X-Pool search: first-stage candidates, exact X-Pool scores for the top ``k``.

    Args:
        text: (B_t, D); frames: (B_v, T, D).
        candidates: optional (B_t, B_v) first-stage scores (default: cosine with :meth:`XPoolHead.candidate_embedding`,
            the vector ``xmr index`` stores for the video).
    Returns:
        (scores (B_t, k), indices (B_t, k)) sorted by the exact X-Pool score, best first. Cost: one (B_t, B_v)
        product plus B_t · k · T · D for the re-scoring, instead of B_t · B_v · T · D.
    """
    text, frames = head.check_text(text), head.check_frames(frames)
    k = min(k, frames.shape[0])
    if candidates is None:  # what an index stores per video: the uniform-attention embedding
        candidates = F.normalize(text, dim=-1) @ head.candidate_embedding(frames).T
    top = candidates.topk(k, dim=1).indices  # (B_t, k)
    exact = torch.stack([head.similarity(text[i: i + 1], frames[top[i]])[0] for i in range(text.shape[0])])
    order = exact.argsort(dim=1, descending=True)
    return exact.gather(1, order), top.gather(1, order)
