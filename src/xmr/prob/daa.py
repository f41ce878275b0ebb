"""DAA: Differentiable ASP Approximation (Li et al., "A Differentiable Semantic Metric Approximation in
Probabilistic Embedding for Cross-Modal Retrieval", NeurIPS 2022).

Average Semantic Precision (ASP, the paper's Eq. 4; :func:`xmr.eval.asp` computes it exactly) compares, for each
query and each gallery item ``i``, the item's rank by the model's score ``R(i, S)`` with its rank by semantic
relevance ``R(i, C)`` (CIDEr between captions in the paper; any relevance matrix here):

    ASP_q = 1/|Ω| Σ_{i∈Ω} min(R(i,C), R(i,S)) / max(R(i,C), R(i,S))

DAA makes the model-side rank differentiable with a temperature sigmoid (Eq. 6-7), as Smooth-AP does:

    R(i, S) ≈ 1 + Σ_{j≠i} sigmoid((S_j − S_i) / τ)

and minimises ``1 − ASP`` (Eq. 8), added to the base objective with weight β (1000 in the reference config, once
per direction).

Deviations, on purpose:

* Scores: the reference's PCME-DAA computes scores from the Monte-Carlo samples' inner products and - through
  ``input2 = input1.view(...)`` in ``criterions/DAA.py`` - between the *image* samples only. Here the scores are
  whatever cross-modal scores the caller passes (with PCME: the match probabilities of the batch, see
  :meth:`xmr.prob.PCME.loss`), as the paper's equations describe.
* The relevance ranks ``R(i, C)`` are constants: the reference also passes them through the sigmoid (no gradient
  flows there either); exact ranks are used here (stable order inside ties), which the sigmoid only approximates.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError


def soft_ranks(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """(Q, G) scores -> (Q, G) differentiable 1-based ranks ``1 + Σ_{j≠i} σ((S_j − S_i)/τ)`` per row."""
    diff = (scores.unsqueeze(1) - scores.unsqueeze(2)) / temperature  # [q, i, j] = S_j - S_i
    sig = torch.sigmoid(diff.clamp(-50, 50))
    eye = torch.eye(scores.shape[1], dtype=torch.bool, device=scores.device)
    return 1 + sig.masked_fill(eye, 0).sum(-1)


def hard_ranks(values: torch.Tensor) -> torch.Tensor:
    """(Q, G) -> (Q, G) 1-based ranks by descending value, ties in index order (stable)."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, values.shape[1] + 1, device=values.device).expand_as(order))
    return ranks.to(values.dtype)


def daa_loss(scores: torch.Tensor, relevance: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """``1 − ASP`` with soft model-side ranks; ``scores`` and ``relevance`` are (Q, G), higher = better."""
    if scores.shape != relevance.shape or scores.ndim != 2:
        raise ConfigError(f"scores and relevance must be the same (Q, G) shape, got {tuple(scores.shape)} and "
                          f"{tuple(relevance.shape)}")
    if temperature <= 0:
        raise ConfigError("temperature must be > 0")
    r_s = soft_ranks(scores, temperature)
    r_c = hard_ranks(relevance.detach().to(scores.dtype))
    return 1 - (torch.minimum(r_s, r_c) / torch.maximum(r_s, r_c)).mean()
