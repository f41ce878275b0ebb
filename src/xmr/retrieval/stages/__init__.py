"""Stages after the first stage, one small module each, registered in :data:`xmr.registries.STAGES`:

========== ===================================================================== ==========================
name       what it does                                                          refused when
========== ===================================================================== ==========================
moments    video score = max(whole video, best window); start/end of that window  (never; no-op for images)
head       exact X-Pool / prototype head scores of candidate videos and windows   the encoder has no such head
recipe     a trained recipe tower: image -> the items' recipes (--manifest),      flat tower; other width;
           text (a recipe title) -> images; every item scored                     not one text / image
experts    query vs experts' text rows (OCR, sidecar, subtitles), fused with      experts the index lacks
           the visual score (ViSTA-style aggregation / max / sum), --phrase
rescore    QB-Norm, dual softmax, CSLS on the candidate scores with a querybank   no querybank
rerank     cross-encoder on the top-k (text query, image) pairs                   image/vector query; videos
========== ===================================================================== ==========================

The pipeline runs them in this order (:mod:`xmr.retrieval.pipeline`)."""
from __future__ import annotations

from ...registries import STAGES
from .base import Stage, StageContext
from .experts import ExpertStage
from .head import DEFAULT_CANDIDATES, HeadStage
from .moments import MomentStage
from .recipe import RecipeStage
from .rerank import RerankStage
from .rescore import RescoreStage

for _cls, _help in ((MomentStage, "video score = best of whole video and its windows, with start/end"),
                    (HeadStage, "exact X-Pool / prototype head re-scoring of candidate videos"),
                    (RecipeStage, "hierarchical recipe tower: image -> recipe / recipe title -> image, exact"),
                    (ExpertStage, "experts' text (OCR, sidecar, subtitles) scored and fused with the visual score"),
                    (RescoreStage, "QB-Norm / dual softmax / CSLS on the candidates, with a querybank"),
                    (RerankStage, "cross-encoder re-ranking of the top-k text->image candidates")):
    STAGES.add(_cls.name, _cls, help=_help)

#: the order stages run in
STAGE_ORDER = ("moments", "head", "recipe", "experts", "rescore", "rerank")

__all__ = ["STAGES", "STAGE_ORDER", "Stage", "StageContext", "MomentStage", "HeadStage", "ExpertStage", "RecipeStage",
           "RescoreStage", "RerankStage", "DEFAULT_CANDIDATES"]
