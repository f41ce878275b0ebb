"""``xattn:<dir>``: a small cross-attention matcher over a token-level dual encoder (the ``tiny`` encoder).

The frozen encoder gives text tokens (B, L, W) with a padding mask and image tokens (B, 1 + P, W) (class token and
patch tokens). The matcher lets every text token attend to the image tokens (``layers`` pre-norm blocks of
cross-attention + MLP), mean-pools the real text tokens and maps the result to one match logit. It is trained by
:func:`train_cross_matcher` with binary image-text matching loss on positives and hard negatives mined from the
dual encoder's own top-ranked wrong items. Saved as ``config.json`` (:class:`CrossMatcherConfig`, which names the
encoder spec the tokens come from) + ``model.safetensors``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint  # noqa: F401 (file names re-exported)
from ..config import config_from_dict
from ..errors import ConfigError
from . import RERANKERS
from .base import CrossEncoder

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


class CrossAttentionMatcher(nn.Module):
    """``forward(text_tokens (B, L, W), text_mask (B, L) bool, image_tokens (B, N, W)) -> (B,) match logits``."""

    def __init__(self, config: CrossMatcherConfig):
        super().__init__()
        self.config = c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.blocks = nn.ModuleList(_CrossBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.layers))
            self.ln_out = nn.LayerNorm(c.width)
            self.head = nn.Linear(c.width, 1)

    def forward(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = text
        for blk in self.blocks:
            x = blk(x, image)
        m = mask.to(x.dtype)[..., None]  # (B, L, 1)
        pooled = (self.ln_out(x) * m).sum(1) / m.sum(1).clamp(min=1)  # mean over real text tokens
        return self.head(pooled).squeeze(-1)

    def save(self, directory, info: dict | None = None) -> Path:
        return save_checkpoint(directory, _FORMAT, asdict(self.config), self, extra={"training": info or {}})

    @classmethod
    def load(cls, directory) -> tuple["CrossAttentionMatcher", dict]:
        ckpt = load_checkpoint(directory, _FORMAT, f"xattn:{directory}", what="cross-attention matcher config",
                               hint="train a matcher with xmr.rerank.train_cross_matcher(...) and save it")
        info = ckpt.config.pop("training", {})
        return ckpt.load_into(cls(CrossMatcherConfig.from_dict(ckpt.config))).eval(), info


def _require_tokens(encoder) -> None:
    if not (encoder.capabilities.text_tokens and encoder.capabilities.patch_tokens):
        raise ConfigError(f"encoder {getattr(encoder, 'spec', encoder)!r} has no token-level outputs "
                          "(encode_text_tokens / encode_image_tokens); use a tiny encoder")


def _text_tokens(encoder, texts: Sequence[str], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    toks, masks = [], []
    for s in range(0, len(texts), batch):
        t, m = encoder.encode_text_tokens(list(texts[s : s + batch]))
        toks.append(t.float().cpu())
        masks.append(m.cpu())
    return torch.cat(toks), torch.cat(masks)


def _image_tokens(encoder, images: Sequence, batch: int = 64) -> torch.Tensor:
    return torch.cat([encoder.encode_image_tokens(list(images[s : s + batch])).float().cpu()
                      for s in range(0, len(images), batch)])


class XattnReranker(CrossEncoder):
    """A :class:`CrossAttentionMatcher` with the token encoder it was trained on."""

    def __init__(self, matcher: CrossAttentionMatcher, encoder, info: dict | None = None):
        _require_tokens(encoder)
        self.matcher = matcher.eval()
        self.encoder = encoder
        self.info = info or {}

    @torch.no_grad()
    def score(self, texts, images, pairs, batch_size: int = 64) -> np.ndarray:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        ut, ti = np.unique(pairs[:, 0], return_inverse=True)
        ui, ii = np.unique(pairs[:, 1], return_inverse=True)
        tt, tm = _text_tokens(self.encoder, [texts[i] for i in ut])
        it = self.image_cache.rows([images[i] for i in ui], lambda ims: _image_tokens(self.encoder, ims))
        out = np.empty(len(pairs), dtype=np.float32)
        for s in range(0, len(pairs), batch_size):
            a, b = ti[s : s + batch_size], ii[s : s + batch_size]
            out[s : s + len(a)] = self.matcher(tt[a], tm[a], it[b]).numpy()
        return out

    def save(self, directory) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (load with ``create_reranker("xattn:DIR")``)."""
        return self.matcher.save(directory, self.info)

    def describe(self) -> dict:
        return {**super().describe(), "config": asdict(self.matcher.config), "training": self.info}


@RERANKERS.register("xattn", help="trained cross-attention matcher over tiny-encoder tokens: xattn:DIR")
def _factory(arg: str, device: str | None = None) -> XattnReranker:
    from ..encoders import create_encoder

    matcher, info = CrossAttentionMatcher.load(arg)
    return XattnReranker(matcher, create_encoder(matcher.config.encoder, device="cpu"), info)


def train_cross_matcher(encoder, texts: Sequence[str], images: Sequence, text_to_item, *, negatives: int = 3,
                        hard_k: int = 8, epochs: int = 20, batch_size: int = 32, lr: float = 3e-3, layers: int = 1,
                        seed: int = 0, info: dict | None = None) -> XattnReranker:
    """Train a matcher on (texts, images) with binary ITM loss.

    For each text: its own image is the positive; ``negatives`` negatives are drawn from the dual encoder's
    top-``hard_k`` items of that text that are not its own (hard negatives), topped up with random items when the
    gallery is small. The encoder stays frozen (its tokens are computed once). Loss: BCE-with-logits with the
    positives weighted by ``negatives`` so both classes count equally. Deterministic for a ``seed``."""
    _require_tokens(encoder)
    t2i = np.asarray(text_to_item, dtype=np.int64)
    n_items = len(images)
    if n_items < 2:
        raise ConfigError("training a matcher needs at least 2 images")
    t0 = time.perf_counter()
    tt, tm = _text_tokens(encoder, texts)
    it = _image_tokens(encoder, images)
    sims = encoder.encode_text(list(texts)) @ encoder.encode_images(list(images)).T  # (T, I) dual scores
    rng = np.random.default_rng(seed)
    ranked = np.argsort(-sims, axis=1, kind="stable")
    hard = [[j for j in row[: hard_k + 1] if j != t2i[i]][:hard_k] for i, row in enumerate(ranked)]
    config = CrossMatcherConfig(width=tt.shape[-1], encoder=getattr(encoder, "spec", "tiny") or "tiny",
                                layers=layers, seed=seed)
    matcher = CrossAttentionMatcher(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(matcher.parameters(), lr=lr, weight_decay=0.01)
        pos_weight = torch.tensor(float(negatives))
        matcher.train()
        last = float("nan")
        for _ in range(epochs):
            rows_t, rows_i, labels = [], [], []
            for i in range(len(texts)):
                pool = hard[i]
                neg = list(rng.choice(pool, min(negatives, len(pool)), replace=False)) if pool else []
                while len(neg) < negatives:
                    j = int(rng.integers(n_items))
                    if j != t2i[i]:
                        neg.append(j)
                rows_t += [i] * (1 + negatives)
                rows_i += [int(t2i[i])] + [int(j) for j in neg]
                labels += [1.0] + [0.0] * negatives
            order = rng.permutation(len(rows_t))
            rt, ri, lb = (torch.as_tensor(np.asarray(x)[order]) for x in (rows_t, rows_i, labels))
            for s in range(0, len(rt), batch_size):
                a, b, y = rt[s : s + batch_size], ri[s : s + batch_size], lb[s : s + batch_size].float()
                logit = matcher(tt[a], tm[a], it[b])
                loss = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                last = float(loss.detach())
        matcher.eval()
    meta = {"texts": len(texts), "images": n_items, "negatives": negatives, "hard_k": hard_k, "epochs": epochs,
            "lr": lr, "seed": seed, "final_loss": round(last, 5), "train_s": round(time.perf_counter() - t0, 2),
            **(info or {})}
    return XattnReranker(matcher, encoder, meta)
