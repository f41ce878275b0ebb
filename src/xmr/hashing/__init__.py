"""Compact binary codes searched by Hamming distance: learned hash heads (DHD for images, DKPH for videos,
unsupervised) and the LSH floor.

Evaluation (mAP@K with label relevance, Hamming similarity) is in :mod:`xmr.eval`; FAISS binary indexes take the
codes packed with :func:`pack_bits`."""
from __future__ import annotations

from .dhd import DHD, DHDConfig, feature_views, pack_bits
from .dkph import DKPH, DKPHConfig, build_knowledge, dkph_loss
from .lsh import lsh_codes

__all__ = ["DHD", "DHDConfig", "DKPH", "DKPHConfig", "build_knowledge", "dkph_loss", "feature_views", "lsh_codes",
           "pack_bits"]
