"""``mrl``: Multimodal Robust Learning against noisy class labels — robust clustering + multimodal contrastive loss.

Hu et al., "Learning Cross-Modal Retrieval with Noisy Labels", CVPR 2021, Section 3:

* Robust Clustering loss ``L_r`` (complementary contrastive learning): class centres ``C`` (d x K, columns
  re-normalised every step, orthogonal initialisation), ``p = softmax(z^T C / tau)``; instead of pushing ``p_y`` up
  (cross-entropy, which memorises wrong labels), it pushes the *complementary* mass down:
  ``L_r = mean_i log(sum_{j != y_i} p_ij)`` — bounded gradients, so noisy labels hurt less. Applied to both modalities.
* Multimodal Contrastive loss ``L_c``: over the 2B embeddings of a batch, each one's positive is the other modality's
  embedding of the same pair, every other embedding (either modality) a negative, at temperature ``tau``; summed over
  both modality directions as in the authors' code.
* ``L = beta * L_r + (1 - beta) * L_c``.

Deviations: ``beta``, ``tau`` and ``contrastive_tau`` defaults are ours (the paper tunes them per dataset); the
class centres are a parameter of the loss, trained with the model. Needs class labels (``label`` per manifest line,
e.g. from ``xmr synth images``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...registries import LOSSES
from .base import Batch, LossInfo, TrainLoss


def complementary_loss(z: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """(B, d) embeddings, (d, K) unit-column centres, (B,) labels -> mean of ``log(1 - p_y)`` (computed as
    ``logsumexp`` over the other classes minus ``logsumexp`` over all, for stability)."""
    logits = z @ centres / tau
    other = logits.masked_fill(nn.functional.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return (other.logsumexp(dim=1) - logits.logsumexp(dim=1)).mean()


def multimodal_contrastive(img: torch.Tensor, txt: torch.Tensor, tau: float) -> torch.Tensor:
    """The authors' ``cross_modal_contrastive_ctriterion`` for two modalities: rows of ``exp(all @ all.T / tau)``
    without self-similarity; positive of an image = its caption and vice versa; both directions summed."""
    b = img.shape[0]
    all_ = torch.cat([img, txt])
    logits = all_ @ all_.T / tau
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=img.device), float("-inf"))
    pos = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(img.device)
    one_dir = nn.functional.cross_entropy(logits, pos)
    return 2 * one_dir  # the code's loss1 and loss2 are equal for two modalities (the matrix is symmetric)


@LOSSES.register("mrl", help="MRL robust clustering (complementary) + multimodal contrastive loss against label "
                 "noise (Hu et al. 2021); needs class labels")
class MRLLoss(TrainLoss):
    needs = frozenset({"labels"})

    @dataclass(frozen=True)
    class Config:
        beta: float = 0.5  # weight of the robust clustering loss
        tau: float = 0.1  # temperature of the class posteriors
        contrastive_tau: float = 0.1  # temperature of the multimodal contrastive loss

    def __init__(self, config, model, info: LossInfo):
        super().__init__(config, model, info)
        if info.num_classes < 2:
            from ...errors import ConfigError

            raise ConfigError("mrl needs class labels (a 'label' per manifest line, at least 2 classes); "
                              "this dataset has none (xmr synth images writes them)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(info.seed)
            c = nn.init.orthogonal_(torch.empty(info.dim, max(info.dim, info.num_classes)))[:, : info.num_classes]
        self.centres = nn.Parameter(c.contiguous())

    def forward(self, b: Batch, model):
        c = self.config
        with torch.no_grad():
            self.centres.div_(self.centres.norm(dim=0, keepdim=True))
        rc = (complementary_loss(b.img, self.centres, b.labels, c.tau)
              + complementary_loss(b.txt, self.centres, b.labels, c.tau))
        mc = multimodal_contrastive(b.img, b.txt, c.contrastive_tau)
        return c.beta * rc + (1 - c.beta) * mc, {"rc": float(rc.detach()), "mc": float(mc.detach())}
