"""``coder``: CODER's diversity-sensitive contrastive learning — momentum queues with adaptive negative weighting.

Wang et al., "CODER: Coupled Diversity-Sensitive Momentum Contrastive Learning for Image-Text Retrieval", ECCV
2022: dynamic dictionaries (momentum-encoded key queues) for both modalities, as in :mod:`.cots`, and
*adaptive negative pair weighting*: each queue negative's term in the InfoNCE denominator is weighted by how close
it is to the query, ``w_qj = K * softmax_j(beta * s(q, n_j))`` (stop-gradient), so hard, informative negatives count
more and the many easy ones less; ``beta = 0`` gives plain momentum contrast.

With ``concept_weight > 0``, CODER's second branch (the concept level): concept descriptors queried from a graph of
the training captions' words, aligned with the same weighted momentum contrast, plus the pseudo clustering label
prediction loss (``cluster_weight``) and our word-grounding term (``word_weight``); see :mod:`.coder_concepts` for
what it follows and where it deviates (no external knowledge graph or word vectors: the graph is the captions'
word co-occurrence). Every COTS option (task-level, token-level, AMF) applies too. The saved model is the
instance-level encoder: retrieval scores its embeddings, the concept branch shapes training only (whether the paper
also scores with concept descriptors at test time could not be read).

Caveat, plainly: the paper's full text was not reachable from this machine (only its abstract and public
summaries); the weighting above is our reading of "adaptive negative pair weighting" and is not checked against the
paper's equations, and neither is the concept level.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...registries import LOSSES
from .cots import COTSLoss, queue_infonce


def adaptive_weights(q: torch.Tensor, queue: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, d) queries, (K, d) negatives -> (B, K) weights ``K * softmax(beta * q @ queue.T)`` (mean 1, no grad)."""
    with torch.no_grad():
        return queue.shape[0] * (beta * q @ queue.T).softmax(dim=1)


@LOSSES.register("coder", help="CODER: momentum queues with diversity-sensitive adaptive weighting of negatives, "
                 "optional concept level over the captions' word graph (Wang et al. 2022; our reading of the paper)")
class CODERLoss(COTSLoss):
    @dataclass(frozen=True)
    class Config(COTSLoss.Config):
        beta: float = 5.0  # sharpness of the adaptive negative weights (0: plain momentum contrast)
        concept_weight: float = 0.0  # concept-level contrast on the caption-word graph (0: instance level only)
        concepts: int = 128  # concept vocabulary: the most frequent caption words
        clusters: int = 16  # pseudo clustering labels of the instance branch
        cluster_weight: float = 0.5  # pseudo clustering label prediction by the concept branch
        word_weight: float = 0.5  # ours: the query logits predict the concepts the pair's caption names
        concept_tau: float = 0.1  # temperature of the concept queries and of the label prediction

        LIMITS = {**COTSLoss.Config.LIMITS, "concepts": (2, 100000), "clusters": (2, 100000),
                  "concept_tau": (1e-4, 10.0), "beta": (0.0, 1e3), "concept_weight": (0.0, 1e3),
                  "cluster_weight": (0.0, 1e3), "word_weight": (0.0, 1e3)}

    def __init__(self, config, model, info):
        super().__init__(config, model, info)
        self.concept = None
        if config.concept_weight > 0:
            if not info.texts:
                raise ConfigError("coder: the concept level (concept_weight > 0) reads the training captions' words; "
                                  "this run gave the loss none")
            from .coder_concepts import ConceptBranch

            self.concept = ConceptBranch(info.texts, info.dim, config.concepts, config.clusters, info.seed)
        self._proto_pending = None

    def negative_weights(self, q, queue):
        return adaptive_weights(q, queue, self.config.beta)

    def extra_terms(self, b, k_img, k_txt, keep):
        if self.concept is None:
            return None, {}
        from .coder_concepts import multi_hot

        c, br = self.config, self.concept
        h = br.concept_embeddings()
        qi, qt = b.img[keep], b.txt[keep]
        ci, li = br.describe(qi, "img", h, c.concept_tau)
        ct, lt = br.describe(qt, "txt", h, c.concept_tau)
        item = (b.item if b.item is not None else b.index)[keep]
        mask = item.view(-1, 1) == self.queue_item.view(1, -1)
        with torch.no_grad():  # keys: the momentum instance keys and the queues described by the current branch
            ki, _ = br.describe(k_img[keep], "img", h, c.concept_tau)
            kt, _ = br.describe(k_txt[keep], "txt", h, c.concept_tau)
            qi_img, _ = br.describe(self.img_queue, "img", h, c.concept_tau)
            qi_txt, _ = br.describe(self.txt_queue, "txt", h, c.concept_tau)
        l_con = (queue_infonce(ci, kt, qi_txt, c.tau, mask, self.negative_weights(ci, qi_txt))
                 + queue_infonce(ct, ki, qi_img, c.tau, mask, self.negative_weights(ct, qi_img))) / 2
        labels, keys = br.pseudo_labels(k_img[keep], k_txt[keep])
        proto = br.prototypes.detach()
        l_clu = (F.cross_entropy(ci @ proto.T / c.concept_tau, labels)
                 + F.cross_entropy(ct @ proto.T / c.concept_tau, labels)) / 2
        words = multi_hot(br.pair_concepts[b.index[keep]], h.shape[0])
        l_word = (F.binary_cross_entropy_with_logits(li, words) + F.binary_cross_entropy_with_logits(lt, words)) / 2
        self._proto_pending = (keys, labels)
        loss = c.concept_weight * l_con + c.cluster_weight * l_clu + c.word_weight * l_word
        logs = {"concept": float(l_con.detach()), "cluster": float(l_clu.detach()), "word": float(l_word.detach())}
        return loss, logs

    @torch.no_grad()
    def after_step(self, model) -> None:
        super().after_step(model)
        if self._proto_pending is not None:
            self.concept.update_prototypes(*self._proto_pending)
            self._proto_pending = None
