"""Temporal localisation over clip features: where in a video a query happens.

* :mod:`.proposals` — training-free: span proposals from per-clip scores, boundary refinement, temporal NMS,
  the best spans of start / end distributions (numpy);
* :mod:`.squidnet` — SQuiDNet (Yoon et al., ECCV 2022): trainable start / end moment prediction with selective
  query-guided debiasing (torch; registered in ``MOMENT_MODELS``; trained by :mod:`xmr.train.moments`).

Sits with ``heads`` / ``video`` in the flow: it reads clip features and query vectors, never an index.
"""
from __future__ import annotations

from .proposals import Span, nms, propose, refine, span_iou, top_spans

__all__ = ["Span", "nms", "propose", "refine", "span_iou", "top_spans"]
