"""``textweighted``: TS2-Net's text-weighted frame aggregation (Liu et al., ECCV 2022, cross-modal matching) — the
video's score for a text is a softmax-weighted mean of its frames' similarities to that text, so frames that match
the query count most (query-dependent, like X-Pool, but with no parameters besides the logit scale).

For a text ``t`` and frames ``v_1..v_T`` (all L2-normalised), ``c_f = <t, v_f>``; the weights are
``w = softmax(c_hat / temperature)`` over the frames, with ``c_hat = c / ||c||_2`` when ``frame_norm`` (the released
code L2-normalises each pair's T similarities before the softmax, then multiplies by 4: ``temperature = 0.25``,
the defaults here), and the score is ``sum_f w_f c_f`` — a convex combination of cosines, so in [-1, 1]. With
``temperature -> inf`` it is meanP's per-frame mean of cosines; as ``temperature -> 0`` the best frame's cosine.

Use it on any frame features (``video:concept+textweighted``, no weights needed) or as the scoring rule of the
faithful TS2-Net (:mod:`xmr.heads.ts2net_vit`, whose frame embeddings come out of a fine-tuned ViT). An index stores
meanP of the frames as the candidate vector plus the frame features; search re-scores the top ``--candidates``
exactly with this rule (as for ``xpool``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from . import VIDEO_HEADS
from .base import HeadConfig, VideoHead


@dataclass(frozen=True)
class TextWeightedConfig(HeadConfig):
    temperature: float = 0.25  # softmax temperature over the frames (TS2-Net's code: x4, i.e. 1/4)
    frame_norm: bool = True  # L2-normalise a pair's T frame similarities before the softmax (TS2-Net's code)
    text_chunk: int = 256  # texts scored at once in similarity() (bounds the (chunk, B_v, T) memory)

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ConfigError(f"TextWeightedConfig: temperature must be > 0, got {self.temperature}")


def text_weighted_similarity(text: torch.Tensor, frames: torch.Tensor, temperature: float = 0.25,
                             frame_norm: bool = True) -> torch.Tensor:
    """(B_t, D) texts, (B_v, T, D) frames -> (B_t, B_v): ``sum_f softmax_f(c_hat / temperature) c_f`` with ``c_f`` the
    cosine of the text and frame f (inputs are L2-normalised here)."""
    t = F.normalize(text, dim=-1)
    v = F.normalize(frames, dim=-1)
    c = torch.einsum("ad,bfd->abf", t, v)  # (B_t, B_v, T)
    logits = F.normalize(c, dim=-1) if frame_norm else c
    w = (logits / temperature).softmax(dim=-1)
    return (w * c).sum(-1)


@VIDEO_HEADS.register("textweighted", help="TS2-Net's text-weighted frame aggregation (query-dependent softmax "
                      "over frame-text similarities; no weights)")
class TextWeightedHead(VideoHead):
    name = "textweighted"
    Config = TextWeightedConfig
    query_independent = False

    def similarity(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        text, frames = self.check_text(text), self.check_frames(frames)
        c = self.config
        if text.shape[0] == 0:
            return text.new_zeros((0, frames.shape[0]))
        return torch.cat([text_weighted_similarity(text[s: s + c.text_chunk], frames, c.temperature, c.frame_norm)
                          for s in range(0, text.shape[0], c.text_chunk)])
