"""VTC's context adapter (Hanu et al., ECCV 2022, "VTC: Improving Video-Text Retrieval with User Comments"):
an item's embedding adapted by its user comments, with attention that can learn to ignore irrelevant ones.

For an item with (frozen, unit) visual embedding ``v`` and comment embeddings ``c_1..c_k`` (the same encoder's text
tower, so one space), a transformer runs over the normalised tokens ``[v, c_1, ..., c_k]`` and its first output
token goes through a linear layer ``W`` (zero-initialised, so training starts from ``v`` itself):

    r = W T([v, c_1, ..., c_k])_0          v' = normalize(v + r)

A missing comment is a learned ``mask`` embedding. Training (InfoNCE between the caption embedding ``q`` and ``v'``,
temperature ``temperature``) uses VTC's two regularisers: each comment is replaced by the mask embedding with
probability ``comment_dropout`` ("random comment masking") and the whole residual is dropped for a share
``skip_adapter`` of the items ("random skip adapter"), so that the adapter cannot be needed and can ignore noise.
``mode="average"`` is the paper's averaging baseline without training: ``normalize(mean(v, c_1..c_k))``.

Deviations: the text side (queries) stays the frozen encoder's (VTC fine-tunes CLIP's towers too, with the adapter
on either branch; here only the item side is adapted, which is what an index can store); the transformer is
``torch.nn.TransformerEncoder`` (post-norm) rather than CLIP's residual attention blocks, with its last layers'
output projections zero-initialised like VTC's ``init_from_avg``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import ConfigError

FORMAT = "xmr-vtc-adapter"


@dataclass
class ContextAdapterConfig:
    dim: int  # the shared embedding width (visual and comment embeddings)
    layers: int = 2  # VTC: 2
    heads: int = 4  # VTC: 8 on 512-d CLIP
    temperature: float = 0.05
    comment_dropout: float = 0.5
    skip_adapter: float = 0.5
    LIMITS: ClassVar[dict] = {"dim": (2, 8192), "layers": (1, 12), "heads": (1, 32), "temperature": (1e-4, 10.0),
                              "comment_dropout": (0.0, 1.0), "skip_adapter": (0.0, 1.0)}

    def __post_init__(self):
        if self.dim % self.heads:
            raise ConfigError(f"context adapter dim {self.dim} is not a multiple of heads {self.heads}")


def _build(cfg: ContextAdapterConfig):
    import torch
    from torch import nn

    class Adapter(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 2 * cfg.dim, dropout=0.0, batch_first=True)
            self.tf = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)
            nn.init.zeros_(self.out.weight)
            self.mask = nn.Parameter(torch.randn(cfg.dim) / np.sqrt(cfg.dim))

        def forward(self, v, c, present, skip=None):
            """v (B, D), c (B, K, D), present (B, K) bool -> adapted unit vectors (B, D)."""
            c = torch.where(present.unsqueeze(-1), c, self.mask.expand_as(c))
            tokens = nn.functional.normalize(torch.cat([v.unsqueeze(1), c], 1), dim=-1)
            r = self.out(self.tf(tokens)[:, 0])
            if skip is not None:
                r = r * (~skip).float().unsqueeze(-1)
            return nn.functional.normalize(nn.functional.normalize(v, dim=-1) + r, dim=-1)

    return Adapter()


@dataclass
class ContextAdapter:
    config: ContextAdapterConfig
    model: object
    info: dict = field(default_factory=dict)

    def adapt(self, v: np.ndarray, comments: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Adapted item embeddings: ``v`` (N, D), ``comments`` (N, K, D), ``present`` (N, K) bool."""
        import torch

        self.model.eval()
        with torch.no_grad():
            return self.model(torch.from_numpy(np.asarray(v, np.float32)), torch.from_numpy(np.asarray(comments, np.float32)),
                              torch.from_numpy(np.asarray(present, bool))).numpy()

    def save(self, directory) -> None:
        from ..checkpoint import save_checkpoint

        save_checkpoint(directory, FORMAT, asdict(self.config), self.model, extra={"training": self.info})

    @classmethod
    def load(cls, directory) -> "ContextAdapter":
        from ..checkpoint import load_checkpoint, load_state
        from ..config import config_from_dict

        ck = load_checkpoint(directory, FORMAT, f"context adapter {directory}", what="VTC context adapter")
        info = ck.config.pop("training", {})
        cfg = config_from_dict(ContextAdapterConfig, ck.config)
        return cls(cfg, load_state(_build(cfg), ck.state_dict(), f"context adapter {directory}"), info)


def average_comments(v: np.ndarray, comments: np.ndarray, present: np.ndarray) -> np.ndarray:
    """VTC's averaging baseline: the mean of the item's embedding and its present comments, normalised."""
    s = v + (comments * present[..., None]).sum(1)
    n = 1 + present.sum(1, keepdims=True)
    s = s / n
    return (s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def train_context_adapter(v: np.ndarray, comments: np.ndarray, present: np.ndarray, queries: np.ndarray,
                          config: ContextAdapterConfig, *, epochs: int = 20, batch_size: int = 64, lr: float = 1e-3,
                          seed: int = 0) -> ContextAdapter:
    """InfoNCE (both directions) between ``queries[i]`` (frozen caption embeddings) and the adapted ``v[i]``."""
    import torch

    n = len(v)
    if not (len(comments) == len(present) == len(queries) == n) or n < 2:
        raise ConfigError(f"context adapter training needs >= 2 items with comments and a query each, got {n} items, "
                          f"{len(comments)} comment lists, {len(queries)} queries")
    if v.shape[1] != config.dim or comments.shape[-1] != config.dim or queries.shape[1] != config.dim:
        raise ConfigError(f"context adapter dim {config.dim}: items, comments and queries must all be {config.dim}-d")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _build(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    V, C, P, Q = (torch.from_numpy(np.asarray(x, t)) for x, t in ((v, np.float32), (comments, np.float32),
                                                                  (present, bool), (queries, np.float32)))
    t0, losses = time.perf_counter(), []
    for _ in range(epochs):
        model.train()
        total = 0.0
        order = torch.from_numpy(rng.permutation(n))
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            if len(idx) < 2:
                continue
            keep = P[idx] & (torch.rand(P[idx].shape) >= config.comment_dropout)
            skip = torch.rand(len(idx)) < config.skip_adapter
            a = model(V[idx], C[idx], keep, skip)
            logits = nn_normalize(Q[idx]) @ a.T / config.temperature
            target = torch.arange(len(idx))
            loss = (torch.nn.functional.cross_entropy(logits, target) +
                    torch.nn.functional.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total)
    return ContextAdapter(config, model, {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                                          "items": n, "seconds": round(time.perf_counter() - t0, 2),
                                          "loss_first": losses[0], "loss_last": losses[-1]})


def nn_normalize(x):
    import torch

    return torch.nn.functional.normalize(x, dim=-1)


__all__ = ["ContextAdapterConfig", "ContextAdapter", "average_comments", "train_context_adapter"]
