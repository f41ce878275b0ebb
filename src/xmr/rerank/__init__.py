"""Two-stage re-ranking: dual-encoder top-K candidates re-scored by a cross-encoder.

Cross-encoders (registry :data:`RERANKERS`, spec ``NAME:ARG`` like encoders):

* ``hf:<dir or hub id>`` — transformers image-text matching heads (BLIP ``BlipForImageTextRetrieval``, ITM head);
* ``xattn:<dir>`` — :class:`CrossAttentionMatcher`, a small trainable cross-attention matcher over the ``tiny``
  encoder's text and image-patch tokens (:func:`train_cross_matcher`; ``config.json`` + ``model.safetensors``).

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
    if name == "HFITMReranker":
        return importlib.import_module(f"{__name__}.hf_itm").HFITMReranker
    raise AttributeError(name)


__all__ = ["RERANKERS", "CrossEncoder", "create_reranker", "combine_scores", "rerank_candidates", "rerank_dense",
           "topk_candidates", "CrossAttentionMatcher", "CrossMatcherConfig", "train_cross_matcher", "XattnReranker",
           "HFITMReranker"]
