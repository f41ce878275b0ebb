"""Temporal video heads: frame features (B, T, D) (or patch tokens (B, T, 1+P, W)) + text (B_t, D) -> similarities.

One registry, ``VIDEO_HEADS`` (name -> head class), one small module per head:

=============  ===============================================================  ==================
name           what it does                                                     video embedding
=============  ===============================================================  ==================
``mean``       CLIP4Clip meanP: mean of L2-normalised frame features           (B, D)
``seqtransf``  CLIP4Clip seqTransf: temporal transformer + position embeddings, (B, D)
               residual to the frame features, then mean
``xpool``      X-Pool: text-conditioned attention over frames                   depends on the text
``ts2net``     TS2-Net: token shift across frames + top-k token selection       (B, D)
               on patch tokens (needs an encoder exposing patch tokens)
``prototypes`` K learned prototype queries attend over frames; text takes its   (B, K, D)
               best prototype (TMVM-style multi-vector video)
``lean``       LINAS/LEAN student: ``seqtransf`` over only ``num_frames`` frames, (B, D)
               distilled from a many-frame teacher that reads associated
               captions (:mod:`.lean`: train_teacher, distill_student)
=============  ===============================================================  ==================

Build with :func:`create_head`, save with ``head.save(dir)`` (``config.json`` + ``model.safetensors``), load with
:func:`load_head`. Training on frozen features: :func:`xmr.heads.train.train_head`.
"""
from __future__ import annotations

from ..registries import VIDEO_HEADS as VIDEO_HEADS  # name -> VideoHead subclass (with a ``Config`` dataclass)
from ..registries import load_all


def _load_all() -> None:
    """Import the head modules (listed in :data:`xmr.registries.MODULES`), which register themselves."""
    load_all("video_head")


def create_head(name: str, config=None, **overrides):
    """``create_head("seqtransf", dim=512, layers=2)``: a fresh head. ``config`` is the head's Config dataclass or a
    dict; keyword overrides are applied on top. Unknown names raise ConfigError listing the available heads."""
    _load_all()
    cls = VIDEO_HEADS.get(name)
    return cls(cls.Config.coerce(config, **overrides))


def list_heads() -> list[tuple[str, str]]:
    """(name, help) of every registered head."""
    _load_all()
    return [(e.name, e.help) for e in VIDEO_HEADS]


def load_head(directory):
    """Load what ``head.save(directory)`` wrote."""
    from .base import load_head as _load

    _load_all()
    return _load(directory)


__all__ = ["VIDEO_HEADS", "create_head", "list_heads", "load_head"]
