"""CODER's concept level, offline: a concept graph built from the training captions' words, queried by both
modalities, aligned with diversity-sensitive contrast, plus the pseudo-clustering label prediction loss.

Wang et al., "CODER", ECCV 2022 (abstract and public summaries; **the full text was not reachable here**): a second
branch "learns to query from commonsense knowledge graph to form concept-level descriptors for both modalities";
both branches are aligned with the diversity-sensitive contrastive learning (DCL: momentum queues + adaptive negative
weights, :mod:`.coder`), and "an extra pseudo clustering label prediction loss" makes the concept branch predict the
online clustering labels that the instance branch gives its input. What is implemented:

* concepts: the ``concepts`` most frequent caption words (lower-case letters, 3+ characters, minus a stop list,
  seen in at least 2 captions) of the training set — :func:`build_vocabulary`;
* the "commonsense" graph: their co-occurrence in the training captions, ``M_ij = (P(j|i) + P(i|j)) / 2`` with
  self-loops, symmetrically normalised ``A = D^-1/2 (M + I) D^-1/2`` (the statistics CVSE, the same group's earlier
  model, builds its consensus graph from) — :func:`cooccurrence_graph`;
* concept embeddings ``H = normalize(A E W)``: learnable node embeddings ``E`` (C, d) propagated by one graph
  convolution ``W`` (the paper initialises nodes from word vectors of a knowledge graph; none can be downloaded here);
* descriptors: a modality's instance embedding ``q`` queries the concepts, ``a = softmax(q W_m H^T / concept_tau)``,
  ``c = normalize(a H)``; the concept-level DCL is :func:`.cots.queue_infonce` between image descriptors and the
  descriptors of the momentum caption keys / caption queue (and the reverse), with CODER's adaptive negative weights;
* pseudo clustering labels: online k-means prototypes ``P`` (``clusters`` x d) over the momentum keys of the
  instance branch (label = nearest prototype of ``normalize(k_img + k_txt)``, prototypes moved by EMA 0.9 towards
  their assigned keys after each step); the concept branch predicts them:
  ``CE(c P^T / concept_tau, label)`` for both modalities' descriptors;
* deviation (ours, to ground the concept nodes in words without word vectors): ``word_weight`` x multi-label BCE
  between a descriptor's query logits ``q W_m H^T / concept_tau`` and the concepts its pair's caption names (the image
  side uses its paired caption's concepts).
"""
from __future__ import annotations

import re
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

STOP = frozenset(
    "the and with are for from this that there these those its his her their into onto over under near next has have "
    "some one two three four five six seven eight nine ten who what which while very been being was were will".split())


def caption_words(text: str) -> list[str]:
    """Concept candidates of one caption: distinct lower-case words of 3+ letters not in the stop list, in order."""
    out = []
    for w in re.findall(r"[a-z]+", text.lower()):
        if len(w) >= 3 and w not in STOP and w not in out:
            out.append(w)
    return out


def build_vocabulary(texts, size: int) -> list[str]:
    """The ``size`` words seen in most captions (at least 2), ties broken alphabetically."""
    df = Counter(w for t in texts for w in caption_words(t))
    ranked = sorted((w for w, n in df.items() if n >= 2), key=lambda w: (-df[w], w))
    return ranked[:size]


def concept_index(texts, vocab: list[str], width: int | None = None) -> torch.Tensor:
    """(P, width) int64: the vocabulary ids of each caption's concepts, padded with -1."""
    pos = {w: i for i, w in enumerate(vocab)}
    rows = [[pos[w] for w in caption_words(t) if w in pos] for t in texts]
    width = width or max([len(r) for r in rows] + [1])
    out = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r[:width])] = torch.tensor(r[:width], dtype=torch.long)
    return out


def cooccurrence_graph(index: torch.Tensor, n: int) -> torch.Tensor:
    """(P, w) concept ids per caption -> (n, n) ``D^-1/2 (M + I) D^-1/2`` with ``M_ij = (P(j|i) + P(i|j)) / 2``."""
    hot = torch.zeros(index.shape[0], n + 1)
    hot.scatter_(1, index.clamp(min=-1) % (n + 1), 1.0)  # -1 -> column n (dropped)
    hot = hot[:, :n]
    co = hot.T @ hot  # (n, n) captions holding both
    cnt = co.diagonal().clamp(min=1)
    cond = co / cnt.view(-1, 1)  # P(j | i)
    m = (cond + cond.T) / 2
    m.fill_diagonal_(0)
    m = m + torch.eye(n)
    d = m.sum(dim=1).rsqrt()
    return d.view(-1, 1) * m * d.view(1, -1)


def multi_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """(B, w) concept ids (-1 padding) -> (B, n) float 0 / 1."""
    hot = torch.zeros(index.shape[0], n + 1, device=index.device)
    hot.scatter_(1, index % (n + 1), 1.0)
    return hot[:, :n]


class ConceptBranch(nn.Module):
    """Concept embeddings over the caption-word graph, a query map per modality and the pseudo-cluster prototypes."""

    def __init__(self, texts, dim: int, concepts: int, clusters: int, seed: int):
        super().__init__()
        vocab = build_vocabulary(texts, concepts)
        if len(vocab) < 2:
            raise ConfigError("coder: the concept level (concept_weight > 0) found fewer than 2 words in 2+ training "
                              "captions; it needs captions with recurring words (or set concept_weight 0)")
        self.vocab = vocab
        n = len(vocab)
        index = concept_index(texts, vocab)
        # derived from the captions (the same data gives the same tensors), so not saved with checkpoints
        self.register_buffer("pair_concepts", index, persistent=False)
        self.register_buffer("adj", cooccurrence_graph(index, n), persistent=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 97)
            self.nodes = nn.Parameter(torch.randn(n, dim) / dim ** 0.5)
            self.gcn = nn.Linear(dim, dim, bias=False)
            self.query_img = nn.Linear(dim, dim, bias=False)
            self.query_txt = nn.Linear(dim, dim, bias=False)
            self.register_buffer("prototypes", F.normalize(torch.randn(clusters, dim), dim=1))

    def concept_embeddings(self) -> torch.Tensor:
        """(C, d) ``normalize(A E W)``."""
        return F.normalize(self.gcn(self.adj @ self.nodes), dim=1)

    def query_logits(self, q: torch.Tensor, side: str, h: torch.Tensor, tau: float) -> torch.Tensor:
        lin = self.query_img if side == "img" else self.query_txt
        return lin(q.to(h.dtype)) @ h.T / tau

    def describe(self, q: torch.Tensor, side: str, h: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d) instance embeddings -> (descriptors (B, d) L2-normalised, query logits (B, C))."""
        logits = self.query_logits(q, side, h, tau)
        return F.normalize(logits.softmax(dim=1) @ h, dim=1), logits

    @torch.no_grad()
    def pseudo_labels(self, k_img: torch.Tensor, k_txt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Instance branch's online clustering: (labels (B,), the normalised keys they were taken from)."""
        keys = F.normalize(k_img.float() + k_txt.float(), dim=1)
        return (keys @ self.prototypes.T).argmax(dim=1), keys

    @torch.no_grad()
    def update_prototypes(self, keys: torch.Tensor, labels: torch.Tensor, momentum: float = 0.9) -> None:
        k = self.prototypes.shape[0]
        sums = torch.zeros_like(self.prototypes).index_add_(0, labels, keys.to(self.prototypes.dtype))
        cnt = torch.bincount(labels, minlength=k).unsqueeze(1)
        moved = F.normalize(momentum * self.prototypes + (1 - momentum) * sums / cnt.clamp(min=1), dim=1)
        self.prototypes.copy_(torch.where(cnt > 0, moved, self.prototypes))


__all__ = ["ConceptBranch", "build_vocabulary", "caption_words", "concept_index", "cooccurrence_graph", "multi_hot"]
