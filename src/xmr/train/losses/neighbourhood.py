"""``neighbourhood``: cross-modal hinge plus constraints that preserve semantic neighbourhoods in both spaces.

Thomas & Kovashka, "Preserving Semantic Neighborhoods for Robust Cross-modal Retrieval", ECCV 2020, Section 3:
neighbours are defined in a fixed text space (the paper: Doc2Vec of the captions; here: the frozen caption features
the adapters start from). For a pair i, ``N(i)`` = the ``k`` in-batch pairs whose captions are nearest to its caption
there. On top of the cross-modal triplet loss (here the VSE++ hardest-negative hinge, :mod:`.vsepp`):

* text-space constraint ``L_text``: caption i must be closer to a neighbour's caption j in N(i) than to the hardest
  non-neighbour caption, by a margin: ``[m - s(t_i, t_j) + max_{k not in N(i)} s(t_i, t_k)]_+``;
* image-space constraint ``L_img``: the same for the images of those pairs (images whose captions are
  neighbours must stay neighbours);
* ``L = L_cross + lambda_text * L_text + lambda_img * L_img``.

Deviations: neighbours are found inside the batch (the paper precomputes them over the data set and samples
triplets); one positive per anchor term is averaged over the ``k`` neighbours. Needs frozen caption features
(``--mode adapter``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...registries import LOSSES
from .base import Batch, TrainLoss
from .vsepp import hinge_terms


def neighbour_mask(ref: torch.Tensor, k: int) -> torch.Tensor:
    """(B, D) reference features -> (B, B) bool, True where j is one of i's k nearest others (cosine)."""
    r = torch.nn.functional.normalize(ref, dim=1)
    s = (r @ r.T).fill_diagonal_(float("-inf"))
    idx = s.topk(min(k, ref.shape[0] - 1), dim=1).indices
    return torch.zeros_like(s, dtype=torch.bool).scatter_(1, idx, True)


def within_modality_hinge(emb: torch.Tensor, nbr: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, d) normalised embeddings, (B, B) neighbour mask -> mean over (anchor, neighbour) of
    ``[margin - s(a, n) + max_{non-neighbours} s(a, x)]_+``."""
    s = emb @ emb.T
    eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    hardest_non = s.masked_fill(nbr | eye, float("-inf")).max(dim=1).values  # (B,)
    cost = (margin - s + hardest_non.view(-1, 1)).clamp(min=0)
    return (cost * nbr).sum() / nbr.sum().clamp(min=1)


@LOSSES.register("neighbourhood", help="cross-modal hinge + constraints preserving text-space neighbourhoods in both "
                 "spaces (Thomas & Kovashka 2020); needs frozen caption features")
class NeighbourhoodLoss(TrainLoss):
    needs = frozenset({"txt_ref"})

    @dataclass(frozen=True)
    class Config:
        margin: float = 0.2  # margin of the cross-modal and within-modality hinges
        k: int = 3  # neighbours per pair (in the batch)
        lambda_text: float = 0.5  # weight of the text-space constraint
        lambda_img: float = 0.5  # weight of the image-space constraint
        warmup_epochs: int = 0  # epochs with the sum (not the max) of cross-modal hinges first, as in :mod:`.vsepp`

    def forward(self, b: Batch, model):
        c = self.config
        cross = hinge_terms(b.img @ b.txt.T, c.margin, hardest=b.epoch >= c.warmup_epochs).mean()
        nbr = neighbour_mask(b.txt_ref, c.k)
        lt = within_modality_hinge(b.txt, nbr, c.margin)
        li = within_modality_hinge(b.img, nbr, c.margin)
        return cross + c.lambda_text * lt + c.lambda_img * li, {"l_text": float(lt.detach()), "l_img": float(li.detach())}
