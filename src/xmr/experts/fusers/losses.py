"""Ranking losses of the fusers' papers, on a (B, B) score matrix whose diagonal holds the matching pairs."""
from __future__ import annotations

import torch


def hardest_triplet(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """VSE++ (Faghri et al., 2018): bidirectional hinge on the hardest in-batch negative, mean over the batch."""
    pos = scores.diag()
    off = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    neg = scores.masked_fill(off, float("-inf"))
    q2i = (margin + neg.max(1).values - pos).clamp(min=0)
    i2q = (margin + neg.max(0).values - pos).clamp(min=0)
    return (q2i + i2q).mean()


def sum_margin(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """MMT's bidirectional max-margin ranking loss: hinge summed over every in-batch negative, mean over pairs."""
    pos = scores.diag()
    off = ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    q2i = (margin + scores - pos[:, None]).clamp(min=0) * off
    i2q = (margin + scores - pos[None, :]).clamp(min=0) * off
    return (q2i.sum() + i2q.sum()) / len(scores)
