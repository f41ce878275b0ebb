"""Frozen teachers for distillation losses (``xmr train --loss teachtext --teachers SPEC[,SPEC...]``).

A teacher is any xmr encoder spec (``concept``, ``concept:fast``, ``tiny:DIR``, ``hf:DIR``, ``trained:DIR``, ...).
Its embeddings of every training caption and image are computed **once** into the feature cache
(:mod:`.features`: the same keys as the student's frozen features, so a teacher that is also some run's ``--model``
is encoded once for both) and indexed per batch by the loop; no teacher runs during training steps.

* ``SPEC`` with text and image towers: a **cross-modal** teacher (its caption embeddings and its image embeddings);
* ``SPEC`` with a text tower only, or ``text:SPEC`` (use only the text tower of a dual encoder): a **text-only**
  teacher (its caption embeddings; the loss decides what it teaches, see :mod:`.losses.teachtext`).

Every teacher is built before anything is encoded or written, so an unknown spec, an encoder without a text tower,
duplicated teachers or weights that are not available offline stop the run at once with the teacher named.
Teachers may have any embedding width (only their own similarities are used).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, XmrError

log = logging.getLogger(__name__)

TEXT_ONLY = "text:"  # prefix: use only the text tower of the encoder that follows


@dataclass(frozen=True)
class Teacher:
    spec: str  # as given (with a text: prefix when the image tower is left out)
    encoder: object  # the built frozen encoder
    text_only: bool  # only its caption embeddings are used


@dataclass
class TeacherFeatures:
    spec: str
    txt: torch.Tensor  # (T, D_k) L2-normalised caption embeddings of the training split
    img: torch.Tensor | None  # (N, D_k) image embeddings; None for a text-only teacher


def parse_teachers(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")``; empty or repeated entries are refused."""
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = tuple(s.strip() for s in items)
    if not specs or any(not s for s in specs):
        raise ConfigError(f"--teachers {text!r}: give encoder specs separated by commas, e.g. concept,text:concept")
    dup = sorted({s for s in specs if specs.count(s) > 1})
    if dup:
        raise ConfigError(f"--teachers: {', '.join(dup)} given more than once (each teacher counts once in the mean)")
    return specs


def _named(spec: str, e: XmrError) -> XmrError:
    """The same kind of error, its message prefixed with the teacher."""
    try:
        return type(e)(f"teacher {spec!r}: {e}")
    except TypeError:  # an error class with other arguments (media errors)
        return ConfigError(f"teacher {spec!r}: {e}")


def load_teachers(specs: tuple[str, ...], device=None) -> list[Teacher]:
    """Build every teacher encoder (no encoding yet); errors name the teacher and keep their kind
    (:class:`~xmr.errors.ModelUnavailableError` for weights that are not here, ConfigError for a bad spec)."""
    from ..encoders import create_encoder

    out = []
    for spec in parse_teachers(specs) if specs else ():
        text_only = spec.startswith(TEXT_ONLY)
        base = spec[len(TEXT_ONLY):] if text_only else spec
        if not base:
            raise ConfigError(f"--teachers {spec}: text: must be followed by an encoder spec, e.g. text:concept")
        try:
            enc = create_encoder(base, device=None if device is None else str(device))
        except XmrError as e:
            raise _named(spec, e) from e
        if not enc.capabilities.text:
            raise ConfigError(f"teacher {spec!r} has no text tower; a teacher must embed the captions")
        text_only = text_only or not enc.capabilities.images
        out.append(Teacher(spec, enc, text_only))
        log.info("teacher %s: %s", spec, "text tower only" if text_only else "text and image towers")
    return out


def _embed(encoder, dataset, side: str, show_progress) -> np.ndarray:
    """One side's cached embeddings. A ``trained:DIR`` adapter model is its base encoder's cached features (shared
    with every run on that base) through its adapters, so its base never re-encodes the data set."""
    from ..encoders.trained import AdaptedEncoder, adapted_numpy
    from .features import cached_image_features, cached_text_features

    if isinstance(encoder, AdaptedEncoder):
        import copy

        base = _embed(encoder.base, dataset, side, show_progress)
        return adapted_numpy(copy.deepcopy(encoder.adapters).cpu(), base, side)
    if side == "image":
        return cached_image_features(encoder, dataset, show_progress=show_progress)[0]
    return cached_text_features(encoder, dataset, show_progress=show_progress)[0]


def teacher_features(teachers: list[Teacher], dataset, show_progress=None) -> list[TeacherFeatures]:
    """Each teacher's cached embeddings of ``dataset``'s captions (and images, unless text-only)."""
    out = []
    for t in teachers:
        try:  # encoders that load their weights on first use (concept's backbones) fail here, not when built
            txt = _embed(t.encoder, dataset, "text", show_progress)
            img = None if t.text_only else _embed(t.encoder, dataset, "image", show_progress)
        except XmrError as e:
            raise _named(t.spec, e) from e
        for name, x in (("caption", txt), ("image", img)):
            if x is not None and not np.isfinite(x).all():
                raise ConfigError(f"teacher {t.spec!r} gave non-finite {name} embeddings on {dataset.name}")
        out.append(TeacherFeatures(t.spec, torch.from_numpy(np.ascontiguousarray(txt)),
                                   None if img is None else torch.from_numpy(np.ascontiguousarray(img))))
    return out


__all__ = ["TEXT_ONLY", "Teacher", "TeacherFeatures", "load_teachers", "parse_teachers", "teacher_features"]
