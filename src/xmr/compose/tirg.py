"""TIRG: Text Image Residual Gating (Vo et al., "Composing Text and Image for Image Retrieval - An Empirical
Odyssey", CVPR 2019), composing in the joint space of a frozen encoder.

The paper's composition (its Eq. 1-3), with φ_x the reference image's feature and φ_t the modification text's::

    φ_xt^rg = w_g · f_gate(φ_x, φ_t) + w_r · f_res(φ_x, φ_t)
    f_gate(φ_x, φ_t) = σ(W_g2 * RELU(W_g1 * [φ_x, φ_t])) ⊙ φ_x
    f_res(φ_x, φ_t)  = W_r2 * RELU(W_r1 * [φ_x, φ_t])

``w_g`` and ``w_r`` are learnable scalars; the gate keeps the parts of the reference the text does not touch, the
residual adds what it changes. Training (``xmr train-compose``, :mod:`xmr.train.compose`) uses the paper's batch
classification loss: for a batch of B (query, target) pairs, ``-log softmax_j(s · <ψ_i, φ_j>)`` at the true target
with a learnable scale ``s`` on L2-normalised features (the paper's soft-triplet / classification loss on a batch,
the normalisation with a learnable scale of its code).

Deviations, stated: the paper composes a CNN's spatial feature map (or its pooled vector) with an LSTM's last
state, and trains the image CNN, the LSTM and the composer end to end. Here both towers are frozen and the
composition runs on their L2-normalised joint-space embeddings (so the composed query searches an existing index
as it is); ``W_g1``, ``W_r1`` are fully connected layers (the paper's 3x3 convolutions on feature maps become
1x1 on a vector) with batch normalisation before each layer (the released code normalises the concatenated
input), and the output is L2-normalised.
``w_g, w_r`` start at 1 and 0.1 so a fresh model returns (about) the gated reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import COMPOSERS
from .base import ComposerConfig


@dataclass(frozen=True)
class TirgConfig(ComposerConfig):
    pass


class _MLP(nn.Sequential):
    """W2 * RELU(W1 * [a, b]), each layer's input batch-normalised."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int):
        super().__init__(nn.BatchNorm1d(dim_in), nn.ReLU(), nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden),
                         nn.ReLU(), nn.Linear(hidden, dim_out))


class GatedResidual(nn.Module):
    """The TIRG composition of (B, d) image and text features into (B, d) (not normalised)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate = _MLP(2 * dim, hidden, dim)
        self.res = _MLP(2 * dim, hidden, dim)
        self.w = nn.Parameter(torch.tensor([1.0, 0.1]))  # w_g, w_r

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xt = torch.cat([x, t], dim=-1)
        return self.w[0] * torch.sigmoid(self.gate(xt)) * x + self.w[1] * self.res(xt)


@COMPOSERS.register("tirg", help="TIRG: gated residual composition of image and text embeddings (Vo et al., CVPR "
                   "2019); trained with the batch classification loss")
class Tirg(nn.Module):
    """TIRG on frozen embeddings: ``forward(image (B, d), text (B, d)) -> (B, d)`` L2-normalised."""

    name = "tirg"
    Config = TirgConfig

    #: the training objective's terms (xmr.train.compose): "compose" only, the paper's
    objective = ("compose",)

    def __init__(self, config: TirgConfig | None = None):
        super().__init__()
        self.config = config or self.Config()
        with torch.random.fork_rng(devices=[]):  # seeded init, the global torch RNG left untouched
            torch.manual_seed(self.config.seed)
            self.compose = GatedResidual(self.config.dim, self.config.hidden)
        self.logit_scale = nn.Parameter(torch.tensor(float(self.config.init_logit_scale)))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.compose(image, text), dim=-1)


__all__ = ["GatedResidual", "Tirg", "TirgConfig"]
