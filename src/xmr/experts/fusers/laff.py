"""LAFF: Lightweight Attentional Feature Fusion (Hu et al., ECCV 2022, "Lightweight Attentional Feature Fusion: A
New Baseline for Text-to-Video Retrieval"), over an item's visual vector and its experts' rows.

LAFF fuses ``k`` features ``f_1..f_k`` of one side into one vector (paper, Sec. 3.1)::

    f'_i = tanh(W_i f_i + b_i)                          # feature-specific projection to the common space (d x hidden)
    a    = softmax_i(w^T f'_i)                          # attention weights, one scalar per feature
    f    = sum_i a_i f'_i                               # the fused feature (a convex combination)

and multi-head LAFF runs ``h`` such blocks in parallel, the similarity being the mean over heads of the cosine
between the text's and the video's fused features. It is applied on both sides: on the item side the features are
the visual vector and one feature per expert (the mean of the item's rows of that expert, as LAFF mean-pools frame
features); on the query side the features are the query's embeddings (one in ``xmr search``: the model's text
embedding, for which the attention is 1 and LAFF is the projection ``tanh(W q + b)``; :meth:`encode_queries` takes
(B, d) or (B, k, d)).

Deviations: an expert an item lacks is left out of its softmax (LAFF's features are always present); the training
loss is the bidirectional triplet ranking loss with the hardest in-batch negative (VSE++) of LAFF's code base, margin
``margin``; the paper's equations are followed as described in its Sec. 3 (its text was not retrievable offline when
this was written, so the exact nonlinearity of the projection, tanh, is as recalled).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...registries import EXPERT_FUSERS
from .base import FuserConfig, ItemTokens, present, projection_init


@dataclass(frozen=True)
class LaffConfig(FuserConfig):
    heads: int = 2  # parallel LAFF blocks (multi-head LAFF); similarity = mean over heads of the cosines
    query_features: int = 1  # number of query-side features fused (1: the model's text embedding)
    margin: float = 0.2  # triplet ranking margin (training)

    LIMITS: ClassVar[dict] = {**FuserConfig.LIMITS, "heads": (1, 64), "query_features": (1, 64), "margin": (0, 10)}


class _Laff(torch.nn.Module):
    name = "laff"
    Config = LaffConfig

    def __init__(self, config: LaffConfig):
        super().__init__()
        self.config, self.directory = config, None
        g = torch.Generator().manual_seed(config.seed)
        h, d, o = config.heads, config.dim, config.hidden
        S, K = len(config.sources), config.query_features

        def p(*shape, scale):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * scale)

        ident = config.identity_init

        base = projection_init(h, d, o, ident, g)  # one start per head, shared by every feature of both sides

        def proj(k):
            return torch.nn.Parameter(base[:, None].expand(h, k, d, o).clone())

        self.item_w, self.item_b = proj(S), p(h, S, o, scale=0.0)
        self.item_att = p(h, o, scale=o ** -0.5)
        self.query_w, self.query_b = proj(K), p(h, K, o, scale=0.0)
        self.query_att = p(h, o, scale=o ** -0.5)

    @staticmethod
    def _fuse(f, avail, W, b, att):
        """f (N, k, d), avail (N, k) bool -> fused (N, h, o) L2-normalised and attention (N, h, k)."""
        proj = torch.tanh(torch.einsum("nkd,hkdo->nhko", f, W) + b[None])
        logits = torch.einsum("nhko,ho->nhk", proj, att).masked_fill(~avail[:, None, :], float("-inf"))
        a = torch.softmax(logits, -1)
        fused = torch.einsum("nhk,nhko->nho", a, proj)
        return torch.nn.functional.normalize(fused, dim=-1), a

    def encode_queries(self, q):
        q = q[:, None, :] if q.dim() == 2 else q
        if q.shape[1] != self.config.query_features:
            raise ValueError(f"laff: {q.shape[1]} query features, configured for {self.config.query_features}")
        fused, _ = self._fuse(q, torch.ones(q.shape[:2], dtype=torch.bool), self.query_w, self.query_b, self.query_att)
        return fused

    def encode_items(self, tokens: ItemTokens):
        F = torch.nn.functional
        S = len(self.config.sources)
        onehot = (F.one_hot(tokens.kind, S) & tokens.mask[..., None]).float()  # (I, T, S)
        count = onehot.sum(1)  # (I, S)
        feats = onehot.transpose(1, 2) @ tokens.x / count.clamp(min=1)[..., None]  # per-source mean (I, S, d)
        fused, a = self._fuse(feats, present(tokens, S), self.item_w, self.item_b, self.item_att)
        return fused, a

    def similarity(self, Q, V):
        return (Q[:, None] * V[0][None]).sum(-1).mean(-1)  # (B, I): mean over heads of the cosines

    def contributions(self, Q, V):
        """Each source's share: its attention weight (mean over heads) times the score."""
        s = self.similarity(Q, V)
        return s[..., None] * V[1].mean(1)[None]

    def source_weights(self, Q, V):
        """(B, I, S) each source's attention weight in the item's fused feature (mean over heads; the same for
        every query: LAFF's item-side attention does not see the query)."""
        a = V[1].mean(1)
        return a[None].expand(Q.shape[0], *a.shape)

    def loss(self, scores):
        from .losses import hardest_triplet

        return hardest_triplet(scores, self.config.margin)


LAFF = EXPERT_FUSERS.register("laff", help="LAFF (Hu et al., ECCV 2022): attention-weighted fusion of the visual "
                              "vector and the experts' features, on both sides; multi-head cosine")(_Laff)

__all__ = ["LAFF", "LaffConfig"]
