"""``xattn:<dir>``: a small cross-attention matcher over a token-level dual encoder (the ``tiny`` encoder).

The frozen encoder gives text tokens (B, L, W) with a padding mask and image tokens (B, 1 + P, W) (class token and
patch tokens). The matcher lets every text token attend to the image tokens (``layers`` pre-norm blocks of
cross-attention + MLP), mean-pools the real text tokens and maps the result to one match logit. It is trained by
:func:`train_cross_matcher` (:func:`xmr.rerank.training.train_matcher` with binary image-text matching loss) on
positives and hard negatives mined from the dual encoder's own top-ranked wrong items. Saved as ``config.json``
(:class:`CrossMatcherConfig`, which names the encoder spec the tokens come from) + ``model.safetensors``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
from torch import nn

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE  # noqa: F401 (file names re-exported)
from ..config import config_from_dict
from ..errors import ConfigError
from . import RERANKERS
from .tokens import TokenMatcher, TokenReranker, check_token_encoder, load_token_reranker, masked_mean

log = logging.getLogger(__name__)

_FORMAT = "xmr-xattn-matcher"


@dataclass(frozen=True)
class CrossMatcherConfig:
    width: int  # token width of the encoder (TinyConfig.width)
    encoder: str = "tiny"  # spec of the token encoder (must provide encode_text_tokens / encode_image_tokens)
    layers: int = 1  # cross-attention blocks
    heads: int = 4  # attention heads; width must be a multiple
    mlp_ratio: float = 2.0  # MLP hidden width = width * mlp_ratio
    seed: int = 0  # initialisation seed (the global RNG is left untouched)

    #: ranges a config.json is held to before any tensor is allocated (xmr.config.check_values)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"width": (1, 4096), "layers": (1, 24), "heads": (1, 64),
                                                        "mlp_ratio": (0.0625, 16)}

    def __post_init__(self):
        if self.width < 1 or self.layers < 1 or self.heads < 1 or self.width % self.heads:
            raise ConfigError(f"CrossMatcherConfig: width must be a positive multiple of heads: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> "CrossMatcherConfig":
        return config_from_dict(cls, d)


class _CrossBlock(nn.Module):
    """x + cross_attn(ln(x), ln(image)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_mlp = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        kv = self.ln_kv(image)
        x = x + self.attn(self.ln_q(x), kv, kv, need_weights=False)[0]
        return x + self.mlp(self.ln_mlp(x))


class CrossAttentionMatcher(TokenMatcher):
    """``forward(text_tokens (B, L, W), text_mask (B, L) bool, image_tokens (B, N, W)) -> (B,) match logits``."""

    NAME = "xattn"
    FORMAT = _FORMAT
    Config = CrossMatcherConfig
    default_loss = "bce"

    def __init__(self, config: CrossMatcherConfig):
        super().__init__(config)
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.blocks = nn.ModuleList(_CrossBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.layers))
            self.ln_out = nn.LayerNorm(c.width)
            self.head = nn.Linear(c.width, 1)

    def forward(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = text
        for blk in self.blocks:
            x = blk(x, image)
        return self.head(masked_mean(self.ln_out(x), mask)).squeeze(-1)  # mean over real text tokens


class XattnReranker(TokenReranker):
    """A :class:`CrossAttentionMatcher` with the token encoder it was trained on."""


@RERANKERS.register("xattn", help="trained cross-attention matcher over tiny-encoder tokens: xattn:DIR")
def _factory(arg: str, device: str | None = None) -> XattnReranker:
    return load_token_reranker(CrossAttentionMatcher, arg, XattnReranker)


def train_cross_matcher(encoder, texts: Sequence[str], images: Sequence, text_to_item, *, negatives: int = 3,
                        hard_k: int = 8, epochs: int = 20, batch_size: int = 32, lr: float = 3e-3, layers: int = 1,
                        seed: int = 0, info: dict | None = None, out=None, resume: bool = False) -> XattnReranker:
    """Train a :class:`CrossAttentionMatcher` on (texts, images) with binary ITM loss
    (:func:`xmr.rerank.training.train_matcher`: hard negatives from the dual encoder's top-``hard_k``, positives
    weighted by ``negatives``; ``out`` / ``resume``: epoch checkpoints). Deterministic for a ``seed``."""
    from .training import MatcherTrainConfig, train_matcher

    check_token_encoder(encoder, label="the xattn matcher")
    config = CrossMatcherConfig(width=int(getattr(encoder, "token_width", 0) or text_width(encoder, texts)),
                                encoder=getattr(encoder, "spec", "tiny") or "tiny", layers=layers, seed=seed)
    tc = MatcherTrainConfig(loss="bce", negatives=negatives, hard_k=hard_k, epochs=epochs, batch_size=batch_size,
                            lr=lr, seed=seed)
    rr = train_matcher(CrossAttentionMatcher(config), encoder, texts, images, text_to_item, tc, info=info, out=out,
                       resume=resume)
    return XattnReranker(rr.matcher, encoder, rr.info)


def text_width(encoder, texts: Sequence[str]) -> int:
    """The token width of an encoder that does not state ``token_width`` (one text encoded)."""
    return int(encoder.encode_text_tokens(list(texts[:1]))[0].shape[-1])
