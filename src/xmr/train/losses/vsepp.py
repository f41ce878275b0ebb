"""``vsepp``: VSE++ hinge (triplet) loss with the hardest in-batch negatives.

Faghri et al., "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives", BMVC 2018:
Eq. (4) (sum of hinges over all negatives, ``hardest=False``) and Eq. (5), the max-of-hinges loss
``l_MH(i, c) = max_c' [a - s(i, c) + s(i, c')]_+ + max_i' [a - s(i, c) + s(i', c)]_+`` (``hardest=True``, default),
with margin ``a`` (0.2 in the paper) and cosine similarity ``s``.

``warmup_epochs`` trains with Eq. (4) first: from randomly initialised heads the max-of-hinges alone can collapse
every embedding to one point (measured here: chance-level recall after 15 epochs on ``xmr synth images``); a sum-loss
warm-up is our choice, not the paper's protocol (the paper fine-tunes from pretrained towers).

Left out: nothing of the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...registries import LOSSES
from .base import Batch, TrainLoss


def hinge_terms(sims: torch.Tensor, margin: torch.Tensor | float, hardest: bool) -> torch.Tensor:
    """(B, B) similarities (rows images, columns captions; positives on the diagonal) -> (B,) per-pair loss:
    hinge over caption negatives of each image plus over image negatives of each caption; ``margin`` is a scalar or
    a (B,) per-pair margin."""
    pos = sims.diag()
    m = torch.as_tensor(margin, dtype=sims.dtype, device=sims.device)
    m = m.view(-1, 1) if m.dim() else m
    eye = torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
    cost_c = (m + sims - pos.view(-1, 1)).clamp(min=0).masked_fill(eye, 0)  # image i vs caption c'
    cost_i = (m.view(1, -1) if m.dim() else m) + sims - pos.view(1, -1)  # caption c vs image i' (columns)
    cost_i = cost_i.clamp(min=0).masked_fill(eye, 0)
    if hardest:
        return cost_c.max(dim=1).values + cost_i.max(dim=0).values
    return cost_c.sum(dim=1) + cost_i.sum(dim=0)


@LOSSES.register("vsepp", help="VSE++ hinge loss with hardest in-batch negatives (Faghri et al. 2018)")
class VSEppLoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        margin: float = 0.2  # a in Eq. (5)
        hardest: bool = True  # Eq. (5) max of hinges; False: Eq. (4) sum of hinges
        warmup_epochs: int = 0  # epochs of the sum of hinges (Eq. 4) before the max (Eq. 5)

    def forward(self, b: Batch, model):
        hardest = self.config.hardest and b.epoch >= self.config.warmup_epochs
        return hinge_terms(b.img @ b.txt.T, self.config.margin, hardest).mean(), {}
