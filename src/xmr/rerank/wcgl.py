"""``wcgl:<dir>``: WCGL — Wasserstein Coupled Graph Learning (Wang et al., ICCV 2021, "Wasserstein Coupled Graph
Learning for Cross-Modal Retrieval"), as a re-ranker over a frozen encoder's tokens.

What the paper describes (its abstract and method outline; the full text was not at hand here, so the details below
are our reading, and the deviations are listed):

1. **Graphs per sample and graph encoders.** The caption's real tokens (words) and the image's patch tokens (regions)
   are the nodes of two graphs. Each modality has its own encoder: a linear map to the joint width ``dim``, then
   ``gcn_layers`` residual graph convolutions ``H <- LN(H + ReLU(A H W))`` over a learned similarity adjacency
   ``A = softmax_j((H W_q)(H W_k)^T / sqrt(dim))`` (padding masked).
2. **Wasserstein coupled dictionary.** ``keys`` pairs of learnable graph keys ``(K^v_m, K^t_m)``, each ``key_nodes``
   nodes of width ``dim``, one key of each pair per modality (counterparts).
3. **Wasserstein Graph Embedding (WGE).** A graph ``G`` of modality ``x`` is embedded as its optimal-transport
   distances to its modality's keys, ``e_m(G) = -W(G, K^x_m)``, ``W`` the entropic Wasserstein cost ``<P, C>`` with
   uniform node masses and cosine cost ``C_ij = 1 - cos(h_i, k_j)``, ``P`` from Sinkhorn (:mod:`xmr.rerank.ot`).
   The match score is the cosine of the two centred embeddings, ``cos(e(G_v) - mean, e(G_t) - mean)`` (the Pearson
   correlation of the two distance profiles over the dictionary): a caption and an image match when they are near
   the same counterpart keys.
4. **Wasserstein discriminant loss** on the keys (:meth:`WCGLMatcher.extra_loss`): counterpart keys close,
   non-counterpart keys far, ``mean_{m != n} ([δ + W(K^v_m, K^t_m) - W(K^v_m, K^t_n)]_+ + [δ + W(K^v_m, K^t_m) -
   W(K^v_n, K^t_m)]_+) / 2``, added to the ranking loss (``hinge``, :mod:`xmr.rerank.training`).

Deviations: the tokens of a frozen encoder instead of detected regions and word embeddings; the adjacency is a
learned similarity graph for both modalities (no parser or spatial graph); the WGE is the vector of transport costs
(not transported features); ranking negatives are the dual encoder's hard items. Optional, not in the paper:
``direct_weight > 0`` adds ``-direct_weight * W(G_v, G_t)``, the transport cost between the two encoded graphs'
nodes themselves (a word-to-region coupling in the style of Graph Optimal Transport, Chen et al. 2020); the default
``0`` is the paper's dictionary score alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_from_dict
from ..errors import ConfigError
from . import RERANKERS
from .ot import wasserstein
from .tokens import TokenMatcher, load_token_reranker

_FORMAT = "xmr-wcgl-matcher"


@dataclass(frozen=True)
class WCGLConfig:
    width: int  # token width of the encoder
    encoder: str = "tiny"  # spec of the token encoder
    dim: int = 64  # joint node width
    gcn_layers: int = 1  # graph convolutions per modality
    keys: int = 16  # pairs of coupled graph keys in the dictionary
    key_nodes: int = 4  # nodes per graph key
    epsilon: float = 0.05  # entropic regularisation of Sinkhorn (costs are in [0, 2])
    sinkhorn_iters: int = 30
    discriminant_margin: float = 0.1  # δ of the Wasserstein discriminant loss
    direct_weight: float = 0.0  # weight of -W(image graph, text graph); 0 = the paper's dictionary score only
    class_token: bool = False  # also use the image's class token as a node
    seed: int = 0  # initialisation seed (the global RNG is left untouched)

    #: ranges a config.json is held to before any tensor is allocated (at most ~0.5 GB of keys, ~0.3 GB of GCN)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"width": (1, 4096), "dim": (1, 2048), "gcn_layers": (0, 8),
                                                        "keys": (2, 512), "key_nodes": (1, 32),
                                                        "epsilon": (1e-4, 10.0), "sinkhorn_iters": (1, 10000)}

    def __post_init__(self):
        if self.width < 1 or self.dim < 1 or self.gcn_layers < 0 or self.keys < 2 or self.key_nodes < 1:
            raise ConfigError(f"WCGLConfig: width, dim, key_nodes >= 1, keys >= 2, gcn_layers >= 0: {self}")
        if self.epsilon <= 0 or self.sinkhorn_iters < 1:
            raise ConfigError(f"WCGLConfig: epsilon must be > 0 and sinkhorn_iters >= 1: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> "WCGLConfig":
        return config_from_dict(cls, d)


class GraphEncoder(nn.Module):
    """(B, n, width) nodes + (B, n) mask -> (B, n, dim): projection, then residual GCN layers over a learned
    similarity adjacency."""

    def __init__(self, width: int, dim: int, layers: int):
        super().__init__()
        self.proj = nn.Linear(width, dim)
        self.q = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        self.k = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        self.w = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.ln = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))

    def adjacency(self, h: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
        logits = self.q[layer](h) @ self.k[layer](h).transpose(1, 2) / math.sqrt(h.shape[-1])
        return torch.softmax(logits.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        for i in range(len(self.w)):
            h = self.ln[i](h + F.relu(self.adjacency(h, mask, i) @ self.w[i](h)))
        return h


class WCGLMatcher(TokenMatcher):
    """``forward(text (B, L, W), mask (B, L), image (B, N, W)) -> (B,)`` WCGL scores (see the module docstring)."""

    NAME = "wcgl"
    FORMAT = _FORMAT
    Config = WCGLConfig
    default_loss = "hinge"

    def __init__(self, config: WCGLConfig):
        super().__init__(config)
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.text_graph = GraphEncoder(c.width, c.dim, c.gcn_layers)
            self.image_graph = GraphEncoder(c.width, c.dim, c.gcn_layers)
            self.image_keys = nn.Parameter(torch.randn(c.keys, c.key_nodes, c.dim))
            self.text_keys = nn.Parameter(torch.randn(c.keys, c.key_nodes, c.dim))

    def _w(self, x, xmask, y, ymask) -> torch.Tensor:
        return wasserstein(x, xmask, y, ymask, self.config.epsilon, self.config.sinkhorn_iters)

    def embed(self, h: torch.Tensor, mask: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Wasserstein graph embedding: (B, n, dim) encoded nodes -> (B, M) ``-W(G, K_m)``."""
        b, m = h.shape[0], keys.shape[0]
        x = h[:, None].expand(b, m, *h.shape[1:]).reshape(b * m, *h.shape[1:])
        xm = mask[:, None].expand(b, m, mask.shape[1]).reshape(b * m, -1)
        k = keys[None].expand(b, *keys.shape).reshape(b * m, *keys.shape[1:])
        km = torch.ones(k.shape[:2], dtype=torch.bool, device=k.device)
        return -self._w(x, xm, k, km).reshape(b, m)

    def graphs(self, text, mask, image) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        nodes = image if self.config.class_token else image[:, 1:]
        vmask = torch.ones(nodes.shape[:2], dtype=torch.bool, device=nodes.device)
        mask = mask.to(torch.bool)
        return self.text_graph(text, mask), mask, self.image_graph(nodes, vmask), vmask

    def forward(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        ht, mt, hv, mv = self.graphs(text, mask, image)
        et, ev = self.embed(ht, mt, self.text_keys), self.embed(hv, mv, self.image_keys)
        score = F.cosine_similarity(et - et.mean(1, keepdim=True), ev - ev.mean(1, keepdim=True), dim=-1)
        if self.config.direct_weight:
            score = score - self.config.direct_weight * self._w(ht, mt, hv, mv)
        return score

    def key_distances(self) -> torch.Tensor:
        """(M, M) ``W(K^v_m, K^t_n)`` between every image key and every text key."""
        m, k = self.image_keys.shape[:2]
        kv = self.image_keys[:, None].expand(m, m, k, -1).reshape(m * m, k, -1)
        kt = self.text_keys[None].expand(m, m, k, -1).reshape(m * m, k, -1)
        ones = torch.ones(m * m, k, dtype=torch.bool, device=kv.device)
        return self._w(kv, ones, kt, ones).reshape(m, m)

    def extra_loss(self) -> torch.Tensor:
        """The Wasserstein discriminant loss on the coupled keys (module docstring, item 4)."""
        w = self.key_distances()
        pos = w.diagonal()
        off = ~torch.eye(len(w), dtype=torch.bool, device=w.device)
        d = self.config.discriminant_margin
        rows = (d + pos[:, None] - w).clamp(min=0)[off]  # image key m vs text keys n != m
        cols = (d + pos[None, :] - w).clamp(min=0)[off]  # text key m vs image keys n != m
        return (rows.mean() + cols.mean()) / 2


@RERANKERS.register("wcgl", help="WCGL (Wang et al. 2021) Wasserstein coupled graph matcher over tiny tokens: "
                    "wcgl:DIR")
def _factory(arg: str, device: str | None = None):
    return load_token_reranker(WCGLMatcher, arg)


__all__ = ["GraphEncoder", "WCGLConfig", "WCGLMatcher"]
