"""MMT: Multi-modal Transformer (Gabeur et al., ECCV 2020, "Multi-modal Transformer for Video Retrieval"), over an
item's visual vector and its experts' rows, matched to the query with query-predicted expert weights.

Item side (paper, Sec. 3.1): the input is, per source ``n`` (visual, then each expert), an *aggregated* token
initialised with the max-pool of that source's features, followed by the source's features (here its rows, at
most ``max_rows``)::

    Omega = F(v) + E(v) + T(v)

``F``: the features through a source-specific linear map to ``hidden``; ``E``: a learned embedding of the source
(expert embedding); ``T``: a learned temporal embedding: ``T_agg`` for the aggregated tokens, ``T_none`` for a row
without time (an image's OCR text, a side-text field), ``T_t`` for a row starting in second ``t`` (capped at
``time_bins``). A transformer encoder (``layers`` x ``heads``, padding masked) runs over ``Omega``; the outputs at
the aggregated tokens are the per-source item embeddings ``psi^n``.

Query side (Sec. 3.2): per source, a gated embedding unit (Miech et al.) ``phi^n = norm(Z * sigmoid(W2 Z + b2))``,
``Z = W1 q + b1``, and the mixture weights ``w(q) = softmax(W q + b)`` over the sources. Similarity (Sec. 3.3)::

    s(q, v) = sum_n w_n(q) <phi^n(q), psi^n(v)>

Deviations: the query is the index model's text embedding (one vector), not BERT token features; a source the item
lacks is dropped from the sum and the weights renormalised over the sources it has (as Collaborative Experts do;
MMT trains on videos that have every expert); the features are the model's unit vectors of the same width for
every source; the training loss is MMT's bidirectional max-margin ranking loss summed over in-batch negatives
(:func:`losses.sum_margin`, margin ``margin``). ``psi^n`` is L2-normalised so each term is a cosine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...registries import EXPERT_FUSERS
from .base import FuserConfig, ItemTokens, present, projection_init


@dataclass(frozen=True)
class MmtConfig(FuserConfig):
    layers: int = 2  # transformer encoder layers (the paper: 4)
    heads: int = 4  # attention heads
    time_bins: int = 32  # temporal embeddings for seconds 0..time_bins-1 (later starts share the last)
    dropout: float = 0.1  # transformer dropout (training only)
    margin: float = 0.05  # max-margin ranking margin (the paper's value)

    LIMITS: ClassVar[dict] = {**FuserConfig.LIMITS, "layers": (1, 24), "heads": (1, 64), "time_bins": (1, 100000),
                              "dropout": (0, 0.9), "margin": (0, 10)}

    def __post_init__(self):
        super().__post_init__()
        if self.hidden % self.heads:
            from ...errors import ConfigError

            raise ConfigError(f"MmtConfig: hidden ({self.hidden}) must be a multiple of heads ({self.heads})")


class _Mmt(torch.nn.Module):
    name = "mmt"
    Config = MmtConfig

    def __init__(self, config: MmtConfig):
        super().__init__()
        self.config, self.directory = config, None
        S, d, o = len(config.sources), config.dim, config.hidden
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.proj_w = torch.nn.Parameter(projection_init(S, d, o, config.identity_init))
            gate_init = self.proj_w.detach().clone()  # the same start on both sides (a shared projection)
            self.proj_b = torch.nn.Parameter(torch.zeros(S, o))
            self.source_emb = torch.nn.Embedding(S, o)
            self.time_emb = torch.nn.Embedding(config.time_bins + 2, o)  # 0: aggregated, 1: no time, 2+: second t
            for emb in (self.source_emb, self.time_emb):  # small next to the unit-norm features (BERT's 0.02)
                torch.nn.init.normal_(emb.weight, std=0.02)
            layer = torch.nn.TransformerEncoderLayer(o, config.heads, 2 * o, config.dropout, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
            self.gate1 = torch.nn.Parameter(gate_init)
            self.gate1_b = torch.nn.Parameter(torch.zeros(S, o))
            self.gate2 = torch.nn.Parameter(torch.randn(S, o, o) * o ** -0.5)
            self.gate2_b = torch.nn.Parameter(torch.zeros(S, o))
            self.mix = torch.nn.Linear(d, S)

    def encode_items(self, tokens: ItemTokens):
        F = torch.nn.functional
        S = len(self.config.sources)
        I = tokens.x.shape[0]
        src = torch.arange(S)
        onehot = F.one_hot(tokens.kind, S).bool() & tokens.mask[..., None]  # (I, T, S)
        pooled = tokens.x[:, :, None, :].masked_fill(~onehot[..., None], float("-inf")).amax(1)  # (I, S, d)
        avail = present(tokens, S)
        pooled = torch.where(avail[..., None], pooled, torch.zeros_like(pooled))
        agg = torch.einsum("isd,sdo->iso", pooled, self.proj_w) + self.proj_b
        agg = agg + self.source_emb(src)[None] + self.time_emb(torch.zeros(S, dtype=torch.long))[None]
        feat = torch.einsum("itd,itdo->ito", tokens.x, self.proj_w[tokens.kind]) + self.proj_b[tokens.kind]
        tbin = torch.where(tokens.time < 0, torch.ones_like(tokens.kind),
                           2 + tokens.time.clamp(min=0).floor().long().clamp(max=self.config.time_bins - 1))
        feat = feat + self.source_emb(tokens.kind) + self.time_emb(tbin)
        seq = torch.cat([agg, feat], 1)
        pad = ~torch.cat([avail, tokens.mask], 1)
        pad[:, 0] = False  # the visual aggregate is always there: no row is fully masked
        out = self.encoder(seq, src_key_padding_mask=pad)[:, :S]
        return F.normalize(out, dim=-1), avail.reshape(I, S)

    def encode_queries(self, q):
        F = torch.nn.functional
        z = torch.einsum("bd,sdo->bso", q, self.gate1) + self.gate1_b
        phi = F.normalize(z * torch.sigmoid(torch.einsum("bso,sop->bsp", z, self.gate2) + self.gate2_b), dim=-1)
        return phi, self.mix(q)  # (B, S, o), mixture logits (B, S)

    def source_weights(self, Q, V):
        """(B, I, S) the query-predicted expert weights ``w_n(q)``, renormalised over the item's experts."""
        _, logits = Q
        _, avail = V
        return torch.softmax(logits[:, None, :].masked_fill(~avail[None], float("-inf")), -1)

    def contributions(self, Q, V):
        phi, _ = Q
        psi, _ = V
        return self.source_weights(Q, V) * torch.einsum("bso,iso->bis", phi, psi)

    def similarity(self, Q, V):
        return self.contributions(Q, V).sum(-1)

    def loss(self, scores):
        from .losses import sum_margin

        return sum_margin(scores, self.config.margin)


MMT = EXPERT_FUSERS.register("mmt", help="MMT (Gabeur et al., ECCV 2020): transformer over visual + expert tokens "
                             "with source and temporal encodings; query-predicted expert weights")(_Mmt)

__all__ = ["MMT", "MmtConfig"]
