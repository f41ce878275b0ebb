"""Two-stage re-ranking: dual-encoder top-K candidates re-scored by a cross-encoder.

Cross-encoders (registry :data:`RERANKERS`, spec ``NAME:ARG`` like encoders):

* ``hf:<dir or hub id>`` — transformers image-text matching heads (BLIP ``BlipForImageTextRetrieval``, ITM head);
* ``xattn:<dir>`` — :class:`CrossAttentionMatcher`, a small trainable cross-attention matcher over the ``tiny``
  encoder's text and image-patch tokens (:func:`train_cross_matcher`; ``config.json`` + ``model.safetensors``);
* ``imram:<dir>`` — :class:`~xmr.rerank.imram.IMRAMMatcher`, IMRAM's iterative recurrent attention (Chen et al. 2020);
* ``wcgl:<dir>`` — :class:`~xmr.rerank.wcgl.WCGLMatcher`, Wasserstein coupled graph learning (Wang et al. 2021).

The token-level ones share :class:`~xmr.rerank.tokens.TokenReranker` and one training loop,
:func:`~xmr.rerank.training.train_matcher` (hard negatives from the dual encoder, epoch checkpoints, resume).

See :mod:`xmr.rerank.base` for score combination and docs/rescoring.md for measured gains.
"""
from __future__ import annotations

import importlib

from ..errors import ConfigError
from ..registries import RERANKERS as RERANKERS  # name -> factory(arg: str, device: str | None) -> CrossEncoder
from ..registries import load_all
from ..spec import parse_spec
from .base import CrossEncoder, combine_scores, rerank_candidates, rerank_dense, topk_candidates


def _load_all() -> None:
    """Import the re-ranker modules (listed in :data:`xmr.registries.MODULES`), which register themselves."""
    load_all("reranker")


def create_reranker(spec: str, device: str | None = None) -> CrossEncoder:
    """``hf:./blip-itm`` or ``xattn:./matcher`` -> a :class:`CrossEncoder`."""
    _load_all()
    s = parse_spec(spec, "re-ranker", hint="e.g. hf:./blip-itm-base-coco or xattn:./matcher")
    if not s.arg:
        raise ConfigError(f"re-ranker spec {spec!r} needs a model: {s.name}:DIR")
    ce = RERANKERS.get(s.name)(s.arg, device=device)
    ce.spec = s.raw
    return ce


def __getattr__(name):  # the torch-heavy parts load on first use
    if name in ("CrossAttentionMatcher", "CrossMatcherConfig", "train_cross_matcher", "XattnReranker"):
        return getattr(importlib.import_module(f"{__name__}.xattn"), name)
    if name in ("IMRAMConfig", "IMRAMMatcher"):
        return getattr(importlib.import_module(f"{__name__}.imram"), name)
    if name in ("WCGLConfig", "WCGLMatcher"):
        return getattr(importlib.import_module(f"{__name__}.wcgl"), name)
    if name in ("TokenMatcher", "TokenReranker"):
        return getattr(importlib.import_module(f"{__name__}.tokens"), name)
    if name in ("MatcherTrainConfig", "train_matcher"):
        return getattr(importlib.import_module(f"{__name__}.training"), name)
    if name == "HFITMReranker":
        return importlib.import_module(f"{__name__}.hf_itm").HFITMReranker
    raise AttributeError(name)


__all__ = ["RERANKERS", "CrossEncoder", "create_reranker", "combine_scores", "rerank_candidates", "rerank_dense",
           "topk_candidates", "CrossAttentionMatcher", "CrossMatcherConfig", "train_cross_matcher", "XattnReranker",
           "HFITMReranker", "IMRAMConfig", "IMRAMMatcher", "WCGLConfig", "WCGLMatcher", "TokenMatcher", "TokenReranker",
           "MatcherTrainConfig", "train_matcher"]
