"""``infonce``: CLIP's symmetric InfoNCE with a learnable temperature.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021, Figure 3
(pseudo-code): ``logits = exp(t) * I_e @ T_e.T``; ``loss = (CE(logits, arange) over rows + over columns) / 2``, with
``t`` a learned log-scale initialised at ``log(1 / 0.07)`` and the scale clipped at 100 (Section 2.5).

Left out: nothing of the loss itself; negatives are the other pairs of the same batch on the same process (no
all-gather across GPUs, so several GPUs see per-GPU batches of negatives).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...registries import LOSSES
from .base import Batch, TrainLoss, symmetric_ce


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """(B, d), (B, d) normalised, scale -> mean of the image->text and text->image cross-entropies of
    ``scale * img @ txt.T`` against the diagonal."""
    return symmetric_ce(scale * img @ txt.T)


@LOSSES.register("infonce", help="CLIP symmetric InfoNCE with a learnable temperature (Radford et al. 2021)")
class InfoNCELoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        init_temperature: float = 0.07  # initial temperature (scale = 1 / temperature)
        learn_temperature: bool = True  # train the log-scale with the model
        max_scale: float = 100.0  # clip exp(log_scale) at this value (CLIP)

    def __init__(self, config, model, info):
        super().__init__(config, model, info)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)),
                                      requires_grad=config.learn_temperature)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.config.max_scale)

    def forward(self, b: Batch, model):
        s = self.scale()
        return clip_loss(b.img, b.txt, s), {"scale": float(s.detach())}
