"""JVSM: Joint Visual Semantic Matching (Chen & Bazzani, "Learning Joint Visual Semantic Matching Embeddings for
Language-guided Retrieval", ECCV 2020), on a frozen encoder's joint space.

JVSM learns image-text *compositional* embeddings in one shared space "by jointly associating visual and textual
modalities via compositional losses", so that a single model does text-image matching and language-guided
retrieval. What is implemented, with ``c(r, m)`` the composition of a reference ``r`` and a modification ``m``,
``v_i`` / ``s_i`` the image / text-description embeddings of item i, all L2-normalised, and ``L(q, k)`` the batch
classification loss (softmax over the batch's keys at the true key, learnable scale) used by TIRG:

* visual composition: ``L(c(v_ref, m), v_tgt)`` -- the reference *image* composed with the text finds the target
  image (TIRG's objective);
* semantic composition: ``L(c(s_ref, m), v_tgt)`` -- the reference's *description* composed with the same text
  finds the target image too: one composition function for both modalities of the reference, which is what makes
  the space joint (a user may start from a product text as well as a photo);
* visual-semantic matching of the composed query: ``L(c(v_ref, m), s_tgt)`` -- the composed query also matches the
  target's description, anchoring the composition in the space where text and images meet.

The loss is their weighted sum (``semantic_weight``, ``matching_weight``; ``xmr.train.compose``). The composition
module is the gated residual of :mod:`.tirg` (JVSM builds on a compositional module of this family); the model adds
a learnable per-modality input scaling so image and text references, whose norms and statistics differ in a frozen
space, enter the shared module on a common footing.

Deviations, stated: the paper trains its image CNN and text encoder with the compositional losses; here both
towers are frozen (the index's vectors are used as they are), so the paper's image-text matching loss between the
towers themselves has nothing to train and is not used -- only the composed query's matching term remains. The
paper's text side encodes attribute words (variable length); here the frozen text tower's sentence embedding of a
description. The full text of the paper beyond its abstract was not available in this session: the three terms
above follow the abstract's description (compositional losses associating the visual and textual modalities in one
space) and are this implementation's reading of it, not a transcription of the paper's equations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import COMPOSERS
from .base import ComposerConfig
from .tirg import GatedResidual


@dataclass(frozen=True)
class JvsmConfig(ComposerConfig):
    semantic_weight: float = 1.0  # weight of the semantic composition term (reference description + text -> target)
    matching_weight: float = 0.5  # weight of the composed-query-to-target-description term

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {**ComposerConfig.LIMITS, "semantic_weight": (0, 100),
                                                         "matching_weight": (0, 100)}


@COMPOSERS.register("jvsm", help="JVSM: one composition for image and text references, trained with joint "
                    "visual / semantic compositional losses (Chen & Bazzani, ECCV 2020)")
class Jvsm(nn.Module):
    """``forward(reference (B, d), text (B, d), reference_is_text=False) -> (B, d)`` L2-normalised."""

    name = "jvsm"
    Config = JvsmConfig
    objective = ("compose", "semantic", "matching")

    def __init__(self, config: JvsmConfig | None = None):
        super().__init__()
        self.config = config or self.Config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.compose = GatedResidual(self.config.dim, self.config.hidden)
        self.ref_scale = nn.Parameter(torch.ones(2, self.config.dim))  # image / text reference input scaling
        self.logit_scale = nn.Parameter(torch.tensor(float(self.config.init_logit_scale)))

    def forward(self, reference: torch.Tensor, text: torch.Tensor, reference_is_text: bool = False) -> torch.Tensor:
        ref = reference * self.ref_scale[1 if reference_is_text else 0]
        return F.normalize(self.compose(ref, text), dim=-1)


__all__ = ["Jvsm", "JvsmConfig"]
