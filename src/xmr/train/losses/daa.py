"""``daa``: PCME plus DAA's differentiable ASP term (Li et al., "A Differentiable Semantic Metric Approximation in
Probabilistic Embedding for Cross-Modal Retrieval", NeurIPS 2022), for ``xmr train --mode adapter``.

The loss is :class:`~xmr.train.losses.pcme.PCMELoss`'s (soft contrastive + VIB prior) plus
``β · (DAA(images -> captions) + DAA(captions -> images))`` (paper Eq. 8; :func:`xmr.prob.daa.daa_loss`, Eq. 6-7),
where each DAA term ranks the batch's match probabilities ``p(m | image i, caption j)`` (PCME Eq. 2) against the
semantic relevance of the pair and returns ``1 − ASP`` with sigmoid-smoothed model ranks. The saved model carries
the same ``uncertainty`` head as ``pcme``.

Semantic relevance ``relevance`` (what the paper's CIDEr between captions stands for):

* ``"captions"`` (default): cosine similarity of the frozen base encoder's caption features between caption ``j``
  and the caption paired with image ``i`` (the paper scores caption-caption CIDEr; a sentence-embedding similarity
  is the offline stand-in, stated as a deviation);
* ``"labels"``: 1 when image ``i`` and caption ``j``'s image share the class label, else 0 (a manifest ``label``).

Other deviations: those of :mod:`xmr.prob.daa` (cross-modal scores, exact relevance ranks) and of
:mod:`xmr.train.losses.pcme`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...prob.daa import daa_loss
from ...registries import LOSSES
from .base import Batch
from .pcme import PCMELoss


@LOSSES.register("daa", help="PCME + DAA's differentiable average-semantic-precision term (Li et al. 2022); adapter "
                             "mode")
class DAALoss(PCMELoss):
    @dataclass(frozen=True)
    class Config(PCMELoss.Config):
        beta: float = 1000.0  # weight of the DAA terms (the reference config's 1000)
        temperature: float = 0.01  # τ of the sigmoid ranks (Eq. 7)
        relevance: str = "captions"  # "captions" (frozen caption-feature cosine) | "labels" (same class)

    def __init__(self, config, model, info):
        super().__init__(config, model, info)
        if config.beta < 0 or config.temperature <= 0 or config.relevance not in ("captions", "labels"):
            raise ConfigError("daa: beta >= 0, temperature > 0, relevance 'captions' or 'labels'")
        if config.relevance == "labels" and info.num_classes == 0:
            raise ConfigError("daa with relevance 'labels' needs class labels ('label' on every manifest line); "
                              "use relevance 'captions'")
        self.needs = frozenset({"labels"} if config.relevance == "labels" else {"txt_ref"})

    def relevance(self, b: Batch) -> torch.Tensor:
        """(B, B) semantic relevance of (image i, caption j)."""
        if self.config.relevance == "labels":
            if b.labels is None:
                raise ConfigError("daa relevance 'labels': the batch has no class labels")
            return (b.labels[:, None] == b.labels[None, :]).to(b.img.dtype)
        if b.txt_ref is None:
            raise ConfigError("daa relevance 'captions' needs frozen caption features: use --mode adapter")
        ref = F.normalize(b.txt_ref.to(b.img.dtype), dim=-1)
        return ref @ ref.T

    def extra_term(self, b: Batch, log_p: torch.Tensor):
        c = self.config
        p = log_p.exp()
        rel = self.relevance(b)
        daa = daa_loss(p, rel, c.temperature) + daa_loss(p.T, rel.T, c.temperature)
        return c.beta * daa, {"daa": float(daa.detach())}
