"""A learned multi-query weighting: softmax attention over the queries of a group, trained with InfoNCE.

For a group of L2-normalised query embeddings ``q_1..q_N`` (mask for padding)::

    a_i = w . q_i + u * cos(q_i, mean(q)) + b        # linear scorer: the query itself and its agreement
    p   = softmax(a / tau_a) over the real queries  # attention weights
    v   = normalize(sum_i p_i q_i)                  # fused query, scored by cosine against items

At initialisation ``w = u = b = 0``, i.e. exactly ``mean-emb``; training can only move away from it where the
InfoNCE loss says so. Saved as ``config.json`` (:class:`QueryWeightingConfig` + provenance) and
``model.safetensors``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint  # noqa: F401 (file names re-exported)
from ..config import config_from_dict
from ..errors import ConfigError

log = logging.getLogger(__name__)

_FORMAT = "xmr-query-weighting"


@dataclass(frozen=True)
class QueryWeightingConfig:
    dim: int  # query embedding width (the encoder's dim)
    attention_temperature: float = 1.0  # tau_a: softmax temperature of the attention scores
    encoder: str = ""  # spec of the encoder whose embeddings it was trained on (checked by the CLI)

    #: ranges a config.json is held to before any tensor is allocated (xmr.config.check_values)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"dim": (1, 65536), "attention_temperature": (1e-6, 1e6)}

    @classmethod
    def from_dict(cls, d: dict) -> "QueryWeightingConfig":
        return config_from_dict(cls, d)


def _module(dim: int):
    import torch
    from torch import nn

    class _Scorer(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(dim + 1, 1)  # [q_i, cos(q_i, mean)] -> attention score
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

        def forward(self, q: "torch.Tensor", mask: "torch.Tensor", tau: float) -> "torch.Tensor":
            """q (G, N, d) normalised, mask (G, N) bool -> fused (G, d) normalised."""
            m = mask.to(q.dtype)
            mean = (q * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)  # (G, d)
            agree = torch.nn.functional.cosine_similarity(q, mean[:, None], dim=-1)  # (G, N)
            a = self.linear(torch.cat([q, agree[..., None]], dim=-1)).squeeze(-1) / tau  # (G, N)
            p = a.masked_fill(~mask, float("-inf")).softmax(dim=1)
            return torch.nn.functional.normalize((p[..., None] * q).sum(1), dim=-1)

    return _Scorer()


class QueryWeighting:
    """The trained weighting. :meth:`fuse` maps (G, N, d) query groups to (G, d) fused, normalised queries."""

    def __init__(self, config: QueryWeightingConfig, info: dict | None = None):
        self.config = config
        self.info = info or {}
        self.module = _module(config.dim)

    def fuse(self, q, mask=None) -> np.ndarray:
        import torch

        q = np.asarray(q, dtype=np.float32)
        mask = np.ones(q.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if q.shape[-1] != self.config.dim:
            raise ConfigError(f"query weighting expects {self.config.dim}-d embeddings, got {q.shape[-1]}-d")
        with torch.no_grad():
            out = self.module(torch.from_numpy(q), torch.from_numpy(mask), self.config.attention_temperature)
        return out.numpy().astype(np.float64)

    def save(self, directory) -> Path:
        return save_checkpoint(directory, _FORMAT, asdict(self.config), self.module, extra={"training": self.info})

    @classmethod
    def load(cls, directory) -> "QueryWeighting":
        ckpt = load_checkpoint(directory, _FORMAT, f"learned:{directory}", what="query-weighting config",
                               hint="train one with xmr.multiquery.train_query_weighting(...).save(DIR)")
        info = ckpt.config.pop("training", {})
        obj = cls(QueryWeightingConfig.from_dict(ckpt.config), info)
        ckpt.load_into(obj.module)
        return obj

    def describe(self) -> dict:
        return {**asdict(self.config), "training": self.info}


def train_query_weighting(text_emb, text_offsets, item_emb, n: int, *, epochs: int = 30, batch_size: int = 64,
                          lr: float = 0.05, temperature: float = 0.05, seed: int = 0, encoder: str = "",
                          info: dict | None = None) -> QueryWeighting:
    """Train a :class:`QueryWeighting` with InfoNCE on training captions.

    ``text_emb`` (T, d) caption embeddings, ``text_offsets`` (I + 1,) item i owns captions
    ``text_offsets[i]:text_offsets[i+1]``, ``item_emb`` (I, d). Each epoch draws, for every item with at least
    ``n`` captions, a random group of ``n`` of them; the fused query is scored against *all* items
    (cross-entropy over I classes at ``temperature``), so memory is batch x I. Deterministic for a ``seed``."""
    import torch

    t = torch.as_tensor(np.asarray(text_emb, dtype=np.float32))
    items = torch.as_tensor(np.asarray(item_emb, dtype=np.float32))
    off = np.asarray(text_offsets, dtype=np.int64)
    eligible = np.flatnonzero(np.diff(off) >= n)
    if len(eligible) < 2:
        raise ConfigError(f"training a query weighting needs at least 2 items with {n} captions")
    model = QueryWeighting(QueryWeightingConfig(dim=t.shape[1], encoder=encoder))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.Adam(model.module.parameters(), lr=lr)
        model.module.train()
        last = float("nan")
        for _ in range(epochs):
            order = rng.permutation(eligible)
            for s in range(0, len(order), batch_size):
                b = order[s : s + batch_size]
                idx = np.stack([off[i] + rng.choice(off[i + 1] - off[i], n, replace=False) for i in b])
                q = t[torch.as_tensor(idx)]  # (B, n, d)
                fused = model.module(q, torch.ones(q.shape[:2], dtype=torch.bool), model.config.attention_temperature)
                logits = fused @ items.T / temperature  # (B, I)
                loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(b))
                opt.zero_grad()
                loss.backward()
                opt.step()
                last = float(loss.detach())
        model.module.eval()
    model.info = {"n": int(n), "epochs": epochs, "lr": lr, "temperature": temperature, "seed": seed,
                  "items": int(len(eligible)), "final_loss": round(last, 5),
                  "train_s": round(time.perf_counter() - t0, 2), **(info or {})}
    return model
