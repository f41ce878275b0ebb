"""Token-level re-rankers: a trainable matcher over a frozen encoder's word and patch tokens.

Every such re-ranker (``xattn``, ``imram``, ``wcgl``) is a :class:`TokenMatcher` — ``forward(text_tokens (B, L, W),
text_mask (B, L) bool, image_tokens (B, N, W)) -> (B,)`` scores — saved as ``config.json`` (its config dataclass,
which names the encoder spec the tokens come from) + ``model.safetensors``, and served by one
:class:`TokenReranker` (the :class:`~xmr.rerank.base.CrossEncoder` that encodes each distinct text and image once
per call and caches image tokens). :func:`~xmr.rerank.training.train_matcher` trains any of them.

Refused with an error that says what to do: an encoder without token outputs (``capabilities.text_tokens`` /
``patch_tokens``), and an encoder whose token width is not the width the matcher was trained on.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import ConfigError
from .base import CrossEncoder

_TRAIN_HINT = ("train one with xmr.rerank.train_matcher(...) (or train_cross_matcher for xattn) and save it; "
               "see docs/rescoring.md")


class TokenMatcher(nn.Module, metaclass=ABCMeta):
    """Base of the token-level matchers. Subclasses set :attr:`NAME` (the registry name), :attr:`FORMAT` (the
    ``"model"`` of ``config.json``) and :attr:`Config` (a frozen dataclass with at least ``width`` and ``encoder``),
    and implement :meth:`forward`. :attr:`default_loss` is the training loss their paper uses."""

    NAME: ClassVar[str]
    FORMAT: ClassVar[str]
    Config: ClassVar[type]
    default_loss: ClassVar[str] = "bce"  # "bce" (binary ITM on log-odds) or "hinge" (triplet, hardest negative)

    def __init__(self, config):
        super().__init__()
        self.config = config

    @abstractmethod
    def forward(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, L, W) text tokens, (B, L) bool mask (True on real tokens), (B, N, W) image tokens -> (B,) scores."""

    def extra_loss(self) -> torch.Tensor | None:
        """A loss on the matcher's own parameters added during training (WCGL's discriminant loss), or None."""
        return None

    def save(self, directory, info: dict | None = None) -> Path:
        return save_checkpoint(directory, self.FORMAT, asdict(self.config), self, extra={"training": info or {}})

    @classmethod
    def load(cls, directory) -> tuple["TokenMatcher", dict]:
        ckpt = load_checkpoint(directory, cls.FORMAT, f"{cls.NAME}:{directory}", what=f"{cls.NAME} matcher config",
                               hint=_TRAIN_HINT)
        info = ckpt.config.pop("training", {})
        return ckpt.load_into(cls(cls.Config.from_dict(ckpt.config))).eval(), info


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, L, ...) over the real positions of a (B, L) bool mask -> (B, ...)."""
    m = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def check_token_encoder(encoder, width: int | None = None, label: str = "this re-ranker") -> None:
    """Raise ConfigError unless ``encoder`` gives word and patch tokens, ``width`` wide when given."""
    spec = getattr(encoder, "spec", "") or type(encoder).__name__
    caps = getattr(encoder, "capabilities", None)
    if not (caps is not None and caps.text_tokens and caps.patch_tokens):
        raise ConfigError(f"{label} matches word tokens against image patch tokens, but the encoder {spec!r} has no "
                          "token-level outputs (capabilities text_tokens / patch_tokens); use an encoder that has "
                          "them: tiny, tiny:DIR, or trained:DIR of a tiny model (xmr train --model tiny)")
    have = getattr(encoder, "token_width", None)
    if width is not None and have is not None and int(have) != int(width):
        raise ConfigError(f"{label} was trained on {width}-wide tokens but the encoder {spec!r} gives {have}-wide "
                          "tokens; retrain the re-ranker on this encoder (xmr.rerank.train_matcher) or point its "
                          "config.json \"encoder\" at the encoder it was trained with")


def text_tokens(encoder, texts: Sequence[str], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, L, W) float32 tokens and (T, L) bool mask of ``texts`` (CPU)."""
    toks, masks = [], []
    for s in range(0, len(texts), batch):
        t, m = encoder.encode_text_tokens(list(texts[s : s + batch]))
        toks.append(t.float().cpu())
        masks.append(m.cpu())
    return torch.cat(toks), torch.cat(masks)


def image_tokens(encoder, images: Sequence, batch: int = 64) -> torch.Tensor:
    """(I, N, W) float32 tokens of ``images`` (CPU)."""
    return torch.cat([encoder.encode_image_tokens(list(images[s : s + batch])).float().cpu()
                      for s in range(0, len(images), batch)])


class TokenReranker(CrossEncoder):
    """A :class:`TokenMatcher` with the token encoder it was trained on."""

    def __init__(self, matcher: TokenMatcher, encoder, info: dict | None = None):
        check_token_encoder(encoder, matcher.config.width, f"re-ranker {matcher.NAME}")
        self.matcher = matcher.eval()
        self.encoder = encoder
        self.info = info or {}

    @torch.no_grad()
    def score(self, texts, images, pairs, batch_size: int = 64) -> np.ndarray:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        out = np.empty(len(pairs), dtype=np.float32)
        if not len(pairs):
            return out
        ut, ti = np.unique(pairs[:, 0], return_inverse=True)
        ui, ii = np.unique(pairs[:, 1], return_inverse=True)
        tt, tm = text_tokens(self.encoder, [texts[i] for i in ut])
        it = self.image_cache.rows([images[i] for i in ui], lambda ims: image_tokens(self.encoder, ims))
        if it.shape[-1] != self.matcher.config.width:
            check_token_encoder(self.encoder, self.matcher.config.width)  # an encoder without token_width
            raise ConfigError(f"re-ranker {self.matcher.NAME} expects {self.matcher.config.width}-wide tokens, the "
                              f"encoder gave {it.shape[-1]}; retrain the re-ranker on this encoder")
        for s in range(0, len(pairs), batch_size):
            a, b = ti[s : s + batch_size], ii[s : s + batch_size]
            out[s : s + len(a)] = self.matcher(tt[a], tm[a], it[b]).float().numpy()
        return out

    def save(self, directory) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (load with ``create_reranker("NAME:DIR")``)."""
        return self.matcher.save(directory, self.info)

    def describe(self) -> dict:
        return {**super().describe(), "matcher": self.matcher.NAME, "config": asdict(self.matcher.config),
                "training": self.info}


def load_token_reranker(cls: type[TokenMatcher], arg: str, reranker_cls: type[TokenReranker] = TokenReranker):
    """``NAME:DIR`` -> the saved matcher with the encoder its config names (on the CPU)."""
    from ..encoders import create_encoder

    matcher, info = cls.load(arg)
    return reranker_cls(matcher, create_encoder(matcher.config.encoder, device="cpu"), info)


__all__ = ["TokenMatcher", "TokenReranker", "check_token_encoder", "image_tokens", "load_token_reranker",
           "masked_mean", "text_tokens"]
