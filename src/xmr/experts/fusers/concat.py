"""Concatenation baseline for the trained fusers: the visual vector and one feature per expert (the mean of its
rows, zeros when the item lacks the expert) concatenated and projected to ``hidden`` by one learned linear map; the
query projected by another; cosine. It is the "feature concatenation" baseline LAFF is compared with (Hu et al.,
ECCV 2022, Sec. 4), trained with the same loss as LAFF (VSE++ hardest-negative triplet, margin ``margin``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...registries import EXPERT_FUSERS
from .base import FuserConfig, ItemTokens, present, projection_init


@dataclass(frozen=True)
class ConcatConfig(FuserConfig):
    margin: float = 0.2  # triplet ranking margin (training)

    LIMITS: ClassVar[dict] = {**FuserConfig.LIMITS, "margin": (0, 10)}


class _Concat(torch.nn.Module):
    name = "concat"
    Config = ConcatConfig

    def __init__(self, config: ConcatConfig):
        super().__init__()
        self.config, self.directory = config, None
        S, d, o = len(config.sources), config.dim, config.hidden
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item = torch.nn.Linear(S * d, o)
            self.query = torch.nn.Linear(d, o)
            if config.identity_init:  # item: the sum of the sources' features; query: itself
                with torch.no_grad():
                    w = projection_init(1, d, o, True)[0]
                    self.item.weight.copy_(w.repeat(S, 1).T)
                    self.query.weight.copy_(w.T)
                    self.item.bias.zero_()
                    self.query.bias.zero_()

    def encode_queries(self, q):
        return torch.nn.functional.normalize(self.query(q), dim=-1)

    def encode_items(self, tokens: ItemTokens):
        S = len(self.config.sources)
        onehot = (torch.nn.functional.one_hot(tokens.kind, S) & tokens.mask[..., None]).float()
        feats = onehot.transpose(1, 2) @ tokens.x / onehot.sum(1).clamp(min=1)[..., None]  # (I, S, d), 0 if absent
        avail = present(tokens, S)
        return torch.nn.functional.normalize(self.item(feats.flatten(1)), dim=-1), avail

    def similarity(self, Q, V):
        return Q @ V[0].T

    def contributions(self, Q, V):
        """No per-source attribution in a joint projection: the whole score is given to the visual source."""
        s = self.similarity(Q, V)
        c = torch.zeros(*s.shape, len(self.config.sources))
        c[..., 0] = s
        return c

    def loss(self, scores):
        from .losses import hardest_triplet

        return hardest_triplet(scores, self.config.margin)


CONCAT = EXPERT_FUSERS.register("concat", help="baseline: visual + per-expert mean features concatenated, one learned "
                                "projection per side, cosine")(_Concat)

__all__ = ["CONCAT", "ConcatConfig"]
