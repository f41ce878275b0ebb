"""``coder``: CODER's diversity-sensitive contrastive learning — momentum queues with adaptive negative weighting.

Wang et al., "CODER: Coupled Diversity-Sensitive Momentum Contrastive Learning for Image-Text Retrieval", ECCV
2022: dynamic dictionaries (momentum-encoded key queues) for both modalities, as in :mod:`.cots`, and
*adaptive negative pair weighting*: each queue negative's term in the InfoNCE denominator is weighted by how close
it is to the query, ``w_qj = K * softmax_j(beta * s(q, n_j))`` (stop-gradient), so hard, informative negatives count
more and the many easy ones less; ``beta = 0`` gives plain momentum contrast.

Caveat, plainly: the paper's full text was not reachable from this machine (only its abstract and public
summaries); the weighting above is our reading of "adaptive negative pair weighting" and is not checked against the
paper's equations. Left out: the concept-level branch (commonsense knowledge graph queries) and its pseudo
clustering label prediction loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...registries import LOSSES
from .cots import COTSLoss


def adaptive_weights(q: torch.Tensor, queue: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, d) queries, (K, d) negatives -> (B, K) weights ``K * softmax(beta * q @ queue.T)`` (mean 1, no grad)."""
    with torch.no_grad():
        return queue.shape[0] * (beta * q @ queue.T).softmax(dim=1)


@LOSSES.register("coder", help="CODER: momentum queues with diversity-sensitive adaptive weighting of negatives "
                 "(Wang et al. 2022; weighting is our reading of the paper)")
class CODERLoss(COTSLoss):
    @dataclass(frozen=True)
    class Config:
        queue_size: int = 1024  # keys kept per modality
        momentum: float = 0.99  # m of the momentum encoders
        tau: float = 0.07  # temperature
        task_weight: float = 0.0  # COTS' task-level KL term (0: off)
        beta: float = 5.0  # sharpness of the adaptive negative weights (0: plain momentum contrast)

    def negative_weights(self, q, queue):
        return adaptive_weights(q, queue, self.config.beta)
