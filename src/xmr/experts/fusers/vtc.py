"""VTC's context adapter as an expert fuser (Hanu et al., ECCV 2022, "VTC: Improving Video-Text Retrieval with User
Comments"): an item's visual vector adapted by its side-text rows, so ``xmr train-fusion --fuser vtc`` trains it
on an index's items and ``xmr search`` / ``xmr serve --expert-fusion vtc:DIR`` score with it.

The adapter is :mod:`xmr.heads.vtc`'s (its equations there): a transformer over the normalised tokens
``[v, c_1, ..., c_K]`` (``v`` the item's visual vector, ``c_k`` its rows of the fuser's experts: with
``xmr index --manifest`` comments, one row per comment), the first output token through a zero-initialised linear
layer ``W``, ``v' = normalize(v + W T(...)_0)``; an empty slot is the learned ``mask`` embedding; the score is the
cosine of the frozen query embedding and ``v'``; training: InfoNCE both ways (temperature ``temperature``) with
VTC's random comment masking (``comment_dropout``) and random adapter skipping (``skip_adapter``).

Deviations from VTC (besides those of :mod:`xmr.heads.vtc`): the context is every row of the fuser's experts, not
comments only (a manifest's title and entities too, unless the index carries them under another expert), the
first ``max_rows`` per expert in index order; ``K = max_rows x experts`` fixed slots (so an item's vector does not
depend on the other items of a batch); the query side is the identity (``hidden`` is unused: the adapter works at
the index's width). ``contributions``: the visual term ``q.v / ||v + r||`` to ``visual``, the residual's
``q.r / ||v + r||`` shared equally by the experts the item has (to ``visual`` when it has none).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...registries import EXPERT_FUSERS
from .base import FuserConfig, ItemTokens, present


@dataclass(frozen=True)
class VtcConfig(FuserConfig):
    layers: int = 2  # VTC: 2
    heads: int = 4
    temperature: float = 0.05
    comment_dropout: float = 0.5  # training: each context row replaced by the mask embedding with this probability
    skip_adapter: float = 0.5  # training: the residual dropped for this share of the items

    LIMITS: ClassVar[dict] = {**FuserConfig.LIMITS, "layers": (1, 12), "heads": (1, 32), "temperature": (1e-4, 10),
                              "comment_dropout": (0, 1), "skip_adapter": (0, 1)}


class _Vtc(torch.nn.Module):
    name = "vtc"
    Config = VtcConfig

    def __init__(self, config: VtcConfig):
        from ...heads.vtc import ContextAdapterConfig, _build

        super().__init__()
        self.config, self.directory = config, None
        self.slots = config.max_rows * len(config.experts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.adapter = _build(ContextAdapterConfig(dim=config.dim, layers=config.layers, heads=config.heads,
                                                       temperature=config.temperature,
                                                       comment_dropout=config.comment_dropout,
                                                       skip_adapter=config.skip_adapter))

    def encode_queries(self, q):
        return torch.nn.functional.normalize(q, dim=-1)

    def encode_items(self, tokens: ItemTokens):
        """(v', v normalised, residual, which experts each item has): v' (I, d) the adapted item vectors."""
        F = torch.nn.functional
        I, T, d = tokens.x.shape
        ctx = torch.zeros(I, max(1, self.slots), d)
        used = torch.zeros(I, max(1, self.slots), dtype=torch.bool)
        n = min(T - 1, self.slots)
        ctx[:, :n], used[:, :n] = tokens.x[:, 1:1 + n], tokens.mask[:, 1:1 + n] & (tokens.kind[:, 1:1 + n] > 0)
        keep, skip = used, None
        if self.training:
            keep = used & (torch.rand(used.shape) >= self.config.comment_dropout)
            skip = torch.rand(I) < self.config.skip_adapter
        m = self.adapter
        c = torch.where(keep.unsqueeze(-1), ctx, m.mask.expand_as(ctx))
        v = F.normalize(tokens.x[:, 0], dim=-1)
        r = m.out(m.tf(F.normalize(torch.cat([v.unsqueeze(1), c], 1), dim=-1))[:, 0])
        if skip is not None:
            r = r * (~skip).float().unsqueeze(-1)
        f = v + r
        return F.normalize(f, dim=-1), v, r, f.norm(dim=-1), present(tokens, len(self.config.sources))

    def similarity(self, Q, V):
        return Q @ V[0].T

    def contributions(self, Q, V):
        _, v, r, norm, avail = V
        vis = (Q @ v.T) / norm[None]  # (B, I)
        res = (Q @ r.T) / norm[None]
        experts = avail[:, 1:].float()  # (I, E)
        n = experts.sum(1)
        share = torch.where(n[:, None] > 0, experts / n.clamp(min=1)[:, None], torch.zeros_like(experts))
        to_visual = (n == 0).float()  # no expert rows: the residual (mask embeddings) counts as visual
        return torch.cat([(vis + res * to_visual[None])[..., None], res[..., None] * share[None]], -1)

    def loss(self, scores):
        target = torch.arange(len(scores))
        logits = scores / self.config.temperature
        return (torch.nn.functional.cross_entropy(logits, target) +
                torch.nn.functional.cross_entropy(logits.T, target)) / 2


VTC = EXPERT_FUSERS.register("vtc", help="VTC (Hanu et al., ECCV 2022): the item's visual vector adapted by its side "
                             "text rows (comments) through a context transformer; InfoNCE")(_Vtc)

__all__ = ["VTC", "VtcConfig"]
