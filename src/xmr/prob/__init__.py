"""Probabilistic embeddings: an input is a distribution, not a point (PCME). Evaluation-side functions (match
probability, PMRP) live in :mod:`xmr.eval` and take numpy arrays; this package holds the torch models and losses
(PCME, and DAA's differentiable semantic-ranking loss)."""
from __future__ import annotations

from .daa import daa_loss
from .pcme import PCME, PCMEConfig, kl_prior, sample, soft_contrastive_loss

__all__ = ["daa_loss", "PCME", "PCMEConfig", "kl_prior", "sample", "soft_contrastive_loss"]
