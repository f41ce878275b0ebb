"""``pcme``: PCME's soft contrastive loss on probabilistic embeddings (Chun et al., "Probabilistic Embeddings for
Cross-Modal Retrieval", CVPR 2021), for ``xmr train --mode adapter``.

The model's L2-normalised adapter outputs are the means ``μ``; this loss owns the two ``log σ`` heads (linear, on the
same frozen features the adapters read, as PCME's uncertainty modules read the towers' features) and the learned
``a``, ``b`` of the match probability. It samples ``K`` embeddings per input (``μ + ε·σ``, torch's global RNG, which
the trainer checkpoints) and applies :func:`xmr.prob.pcme.soft_contrastive_loss` (Eq. 2-3) over every pair of the
batch plus the VIB prior (Eq. 5) — the maths and its deviations are documented in :mod:`xmr.prob.pcme`.

Initial ``log σ`` (``init_log_sigma``, default -6): the sample noise has norm about ``σ·√d`` against unit-norm
means, so it must start well below 1 for wide embeddings. Measured on coco-mini (``benchmarks/pcme_coco_mini.py``, 512-d
``concept:zeroshot`` features, 10 epochs, seed 0): with -3 (noise norm ≈ 1.1) t2i R@1 fell to 11.4 (infonce: 40.8),
with -6 (≈ 0.06) it stayed at 39.2. The reference learns ``log σ`` from its features without this bias.

Deviations specific to the trainer:

* Pairs of the same image (several captions of one image in a batch) count as matches, not negatives (the
  reference treats every off-diagonal pair as a negative).
* The loss is the reference's *sum* over pairs, not a mean (Adam is insensitive to the scale).
* The means are the adapters' outputs (what search ranks by). The ``log σ`` heads and the learned ``a``, ``b`` are
  saved in ``trained:DIR`` as its ``uncertainty`` head (:meth:`PCMELoss.export_heads`), so ``xmr eval`` and
  ``xmr search --json`` report per-caption / per-image uncertainty (mean ``log σ``) for such a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError
from ...prob.pcme import _soft_contrastive, kl_prior, sample
from ...registries import LOSSES
from .base import Batch, TrainLoss


@LOSSES.register("pcme", help="PCME soft contrastive loss on probabilistic embeddings (Chun et al. 2021); "
                              "adapter mode")
class PCMELoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        num_samples: int = 7  # K samples per input
        init_a: float = 15.0  # initial distance scale a (> 0), learned
        init_b: float = 15.0  # initial shift b, learned
        vib_beta: float = 1e-5  # weight of the KL prior
        kl: str = "reference"  # "reference" | "exact" (see xmr.prob.pcme)
        init_log_sigma: float = -6.0  # initial log sigma (bias of the log-sigma heads); see the docstring

    def __init__(self, config, model, info):
        super().__init__(config, model, info)
        if getattr(model, "mode", None) != "adapter":
            raise ConfigError("pcme trains log-sigma heads on the frozen features: use --mode adapter")
        if config.num_samples < 1 or config.init_a <= 0 or config.vib_beta < 0 or config.kl not in ("reference",
                                                                                                     "exact"):
            raise ConfigError("pcme: num_samples >= 1, init_a > 0, vib_beta >= 0, kl 'reference' or 'exact'")
        self.img_sigma = self._head(model.net.image.config.in_dim, info.dim, config.init_log_sigma)
        self.txt_sigma = self._head(model.net.text.config.in_dim, info.dim, config.init_log_sigma)
        self.log_a = nn.Parameter(torch.tensor(math.log(config.init_a)))
        self.b = nn.Parameter(torch.tensor(float(config.init_b)))

    @staticmethod
    def _head(in_dim: int, dim: int, bias: float) -> nn.Linear:
        head = nn.Linear(in_dim, dim)
        nn.init.zeros_(head.weight)
        nn.init.constant_(head.bias, bias)
        return head

    def forward(self, b: Batch, model):
        c = self.config
        ls_i = self.img_sigma(b.img_in.to(b.img.dtype))
        ls_t = self.txt_sigma(b.txt_in.to(b.txt.dtype))
        zi, zt = sample(b.img, ls_i, c.num_samples), sample(b.txt, ls_t, c.num_samples)
        item = b.item if b.item is not None else torch.arange(b.img.shape[0], device=b.img.device)
        match, log_p = _soft_contrastive(zi, zt, self.log_a.exp(), self.b, item[:, None] == item[None, :])
        kl = kl_prior(b.img, ls_i, c.kl) + kl_prior(b.txt, ls_t, c.kl)
        logs = {"match": float(match.detach()), "kl": float(kl.detach()), "a": float(self.log_a.exp().detach()),
                "b": float(self.b.detach()), "txt_log_sigma": float(ls_t.detach().mean())}
        extra, extra_logs = self.extra_term(b, log_p)
        logs.update(extra_logs)
        return match + c.vib_beta * kl + extra, logs

    def extra_term(self, b: Batch, log_p: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """A term added to the loss from the batch's log match probabilities (images x captions); DAA's."""
        return torch.zeros((), device=log_p.device), {}

    def export_heads(self):
        c = self.config
        return {"uncertainty": ({"image_in": self.img_sigma.in_features, "text_in": self.txt_sigma.in_features,
                                 "dim": self.img_sigma.out_features, "a": float(self.log_a.exp().detach()),
                                 "b": float(self.b.detach()), "num_samples": c.num_samples},
                                nn.ModuleDict({"image": self.img_sigma, "text": self.txt_sigma}))}
