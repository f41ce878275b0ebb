"""Re-scoring: change a similarity matrix (or top-K candidate lists) before ranking.

Methods (one module each, registered in :data:`RESCORERS`):

* ``qbnorm`` — :func:`qb_norm`, QB-Norm with the Dynamic Inverted Softmax over a :class:`QueryBank`;
* ``dsl`` — :func:`dual_softmax` (CAMoE / TS2-Net);
* ``csls`` — :func:`csls` (cross-domain similarity local scaling).

:class:`RescorePipeline` applies several steps in a declared order and records each one (parameters, querybank,
transductive or not) for the result JSON. See docs/rescoring.md.
"""
from __future__ import annotations

from ..registries import RESCORERS as RESCORERS  # name -> Rescorer subclass (built with the method's parameters)

from .bank import QueryBank, querybank_from_source, querybank_from_texts, read_bank_texts  # noqa: E402
from .base import Rescorer  # noqa: E402
from .csls import CSLS, csls  # noqa: E402
from .dsl import DualSoftmax, dual_softmax  # noqa: E402
from .pipeline import RescorePipeline, build_pipeline, parse_rescore_names  # noqa: E402
from .qbnorm import QBNorm, qb_norm, qb_norm_topk  # noqa: E402

__all__ = [
    "RESCORERS", "Rescorer", "QueryBank", "querybank_from_source", "querybank_from_texts", "read_bank_texts",
    "qb_norm", "qb_norm_topk", "QBNorm", "dual_softmax", "DualSoftmax", "csls", "CSLS",
    "RescorePipeline", "build_pipeline", "parse_rescore_names",
]
