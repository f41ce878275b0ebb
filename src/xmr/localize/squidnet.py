"""SQuiDNet: Selective Query-guided Debiasing for video corpus moment retrieval (Yoon et al., ECCV 2022), on clip
features (frame / window embeddings) and query vectors.

What the paper has and what this module implements (the training procedure is :mod:`xmr.train.moments`):

* **NMR, naive moment retrieval**: a query-conditioned encoder over a video's clips predicts a start and an end
  distribution and a video score. Implemented: clip and query projections fused per clip (``[h, h*q, q]``, the
  role of the paper's modality-matching attention, here without subtitles) plus the clip's cosine with the query
  (the clip features and queries of an xmr index share one space), and a temporal convolution, then start /
  end logits per clip and a video logit (log-sum-exp over clips). The loss is the authors' code's: cross-entropy of
  the start (and end) index over the *concatenated* clips of the ground-truth video and the contrasted videos (a
  corpus-level softmax, as in TVR's XML), plus cross-entropy of the video logits with the ground truth first.
* **BMR, biased moment retrieval**: the same network with its own weights, reading only the *object words* of the
  query, trained with the same loss; it learns where objects co-occur with moments, i.e. the retrieval bias.
  Its top videos for a query are the "biased moments".
* **SQuiD, selective query-guided debiasing**: the paper decides per query whether the bias helps, from a
  **co-occurrence table** (counts of predicates per object word in the training queries; an object's most frequent
  predicates are its key predicates, and a query whose predicate is key for its object is one the bias helps) and a
  **learnable confounder**. Implemented: the table (:func:`cooccurrence_decisions`) labels the training queries; the
  learnable confounder is a small network on the query vector trained on those labels, so the decision is
  available for any query at search time (free text has no parsed object words). For a query the bias does *not*
  help, NMR is trained against the BMR's top videos (contrastive debiasing: the biased moments become the
  negatives of the corpus-level softmax); a query the bias helps keeps random negatives. Inference is the NMR's,
  as in the authors' code: ``p(v) * p_st(i | v) * p_ed(j | v)`` (softmax over videos, over each video's clips).
  An addition that is *not* the paper's: ``debias_weight > 0`` also subtracts ``debias_weight * BMR`` at inference
  for the queries the confounder marks as harmful (off by default; benchmarks/moments.py measures it).

Deviations: no subtitles (the paper's video-subtitle matching is dropped: xmr indexes pixels only); a small fused
encoder instead of the paper's BERT-sized modality-matching attention; the confounder is a classifier trained on
the table's labels instead of the paper's confounder dictionary; the corpus-level span score is
``log p_start(v, i) + log p_end(v, j)`` over all clips of the candidate videos (TVR's convention), without the
paper's conditional moment prediction that feeds the start into the end; the biased videos are the BMR's best among
a random pool per query and epoch, not the whole corpus.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import config_from_dict
from ..errors import ConfigError
from ..registries import MOMENT_MODELS

FORMAT = "xmr-squidnet"


@dataclass(frozen=True)
class SQuiDNetConfig:
    dim: int = 32  # width of the clip features and query vectors (the index's embedding width)
    hidden: int = 64  # width inside both branches
    kernel: int = 3  # temporal convolution width (clips)
    max_moment: int = 12  # longest predicted moment, in clips
    negatives: int = 4  # videos contrasted with the ground-truth video per query in training
    debias_weight: float = 0.0  # xmr's optional inference-time subtraction of the biased branch (0: the paper's)
    key_predicates: int = 1  # predicates per object kept as "key" in the co-occurrence table
    seed: int = 0  # initialisation seed (the global torch RNG is left untouched)

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "dim": (1, 8192), "hidden": (1, 4096), "kernel": (1, 31), "max_moment": (1, 4096), "negatives": (0, 1024),
        "debias_weight": (0, 10), "key_predicates": (1, 1024)}

    @classmethod
    def coerce(cls, config=None, **overrides) -> "SQuiDNetConfig":
        if isinstance(config, cls):
            return config_from_dict(cls, {**asdict(config), **overrides})
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"SQuiDNetConfig: expected a dict, got {type(config).__name__}")
        return config_from_dict(cls, {**(config or {}), **overrides})


class MomentBranch(nn.Module):
    """Query-conditioned start / end / video logits over clips. frames (B, N, T, D), query (B, D) ->
    start (B, N, T), end (B, N, T), video (B, N); ``mask`` (B, N, T) bool marks real clips."""

    def __init__(self, c: SQuiDNetConfig):
        super().__init__()
        h = c.hidden
        self.clip = nn.Sequential(nn.Linear(c.dim, h), nn.GELU(), nn.LayerNorm(h))
        self.query = nn.Linear(c.dim, h)
        self.fuse = nn.Linear(3 * h, h)
        self.sim = nn.Linear(1, h)  # the clip's cosine with the query in the shared space, as a feature
        self.conv = nn.Conv1d(h, h, c.kernel, padding=c.kernel // 2)
        self.norm = nn.LayerNorm(h)
        self.start = nn.Linear(h, 1)
        self.end = nn.Linear(h, 1)
        self.video = nn.Linear(h, 1)

    def forward(self, frames, query, mask=None):
        b, n, t, _ = frames.shape
        h = self.clip(frames)  # (B, N, T, H)
        q = self.query(query)[:, None, None, :].expand_as(h)
        cos = torch.einsum("bntd,bd->bnt", F.normalize(frames, dim=-1), F.normalize(query, dim=-1))
        x = F.gelu(self.fuse(torch.cat([h, h * q, q], dim=-1)) + self.sim(cos[..., None]))
        y = self.conv(x.reshape(b * n, t, -1).transpose(1, 2)).transpose(1, 2).reshape(b, n, t, -1)
        x = self.norm(x + F.gelu(y))
        start, end, vid = self.start(x)[..., 0], self.end(x)[..., 0], self.video(x)[..., 0]
        if mask is not None:
            neg = torch.finfo(start.dtype).min / 4
            start, end, vid = (z.masked_fill(~mask, neg) for z in (start, end, vid))
        return start, end, torch.logsumexp(vid, dim=-1)


class SQuiDNet(nn.Module):
    """Both branches and the learnable confounder. See the module docstring for the equations and deviations."""

    def __init__(self, config: SQuiDNetConfig | dict | None = None):
        super().__init__()
        self.config = SQuiDNetConfig.coerce(config)
        self.provenance: dict | None = None  # how it was trained; saved as "training"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.nmr = MomentBranch(self.config)
            self.bmr = MomentBranch(self.config)
            h = self.config.hidden
            self.confounder = nn.Sequential(nn.Linear(self.config.dim, h), nn.GELU(), nn.Linear(h, 1))

    # --- training losses ----------------------------------------------------------------------------------
    @staticmethod
    def moment_loss(start, end, video, st_idx, ed_idx) -> torch.Tensor:
        """The authors' loss: CE of the start / end index over the clips of all N videos (ground truth at video 0)
        plus CE of the video logits (ground truth 0). start / end (B, N, T); indices (B,) into video 0's clips."""
        b = start.shape[0]
        zero = torch.zeros(b, dtype=torch.long)
        return (F.cross_entropy(start.reshape(b, -1), st_idx) + F.cross_entropy(end.reshape(b, -1), ed_idx)
                + F.cross_entropy(video, zero))

    def bias_helps(self, query: torch.Tensor) -> torch.Tensor:
        """The learnable confounder's decision logit per query (> 0: the bias helps, keep it). (B, D) -> (B,)"""
        return self.confounder(query)[:, 0]

    # --- inference ----------------------------------------------------------------------------------------
    def check(self, frames: np.ndarray, query: np.ndarray) -> None:
        d = self.config.dim
        if frames.ndim != 3 or frames.shape[-1] != d or frames.shape[0] < 1 or frames.shape[1] < 1:
            raise ConfigError(f"SQuiDNet needs clip features (videos, clips, {d}), got shape {frames.shape}")
        if query.ndim != 2 or query.shape[1] != d:
            raise ConfigError(f"SQuiDNet needs query vectors (queries, {d}), got shape {query.shape}")

    @torch.no_grad()
    def corpus_logp(self, frames, query, *, object_query=None, debias: bool = True, selective: bool = True,
                    mask=None):
        """Span terms for each query over every clip of every video, as the authors' inference computes them.

        frames (V, T, D), query (Q, D), mask (V, T) bool -> start, end (Q, V, T): log-softmax over each video's
        clips, and video (Q, V): log-softmax of the video logits over the videos. A span ``(v, i, j)`` of the corpus
        scores ``video[v] + start[v, i] + end[v, j]`` (the log of ``p(v) p_st(i|v) p_ed(j|v)``), one of the
        ground-truth video ``start + end``.

        ``debias`` with ``config.debias_weight > 0`` (an addition of xmr's, off by default): for queries whose
        confounder says the bias does not help (every query with ``selective=False``), ``debias_weight`` times the
        biased branch's terms are subtracted. ``object_query`` is what the biased branch reads (default: the
        query)."""
        self.eval()
        frames = torch.as_tensor(np.asarray(frames, dtype=np.float32))
        query = torch.as_tensor(np.asarray(query, dtype=np.float32))
        self.check(frames.numpy(), query.numpy())
        v, t, _ = frames.shape
        m = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))[None].expand(len(query), v, t)
        fr = frames[None].expand(len(query), v, t, frames.shape[-1])

        def norm(branch, q):
            st, ed, vid = branch(fr, q, m)
            return F.log_softmax(st, dim=-1), F.log_softmax(ed, dim=-1), F.log_softmax(vid, dim=-1)

        st, ed, vid = norm(self.nmr, query)
        if debias and self.config.debias_weight > 0:
            oq = query if object_query is None else torch.as_tensor(np.asarray(object_query, dtype=np.float32))
            harmful = (self.bias_helps(query) <= 0).float()[:, None, None] if selective else \
                torch.ones(len(query), 1, 1)
            bst, bed, bvid = norm(self.bmr, oq)
            lam = self.config.debias_weight * harmful
            st, ed, vid = st - lam * bst, ed - lam * bed, vid - lam[:, :, 0] * bvid
        return st.numpy(), ed.numpy(), vid.numpy()

    # --- save / load ----------------------------------------------------------------------------------------
    def save(self, directory: str | Path, training: dict | None = None, heads: dict | None = None) -> Path:
        """``config.json`` + ``model.safetensors``; ``training`` (provenance) is saved as ``"training"``.
        ``heads`` exists for the trainer's ``save_epoch`` signature: SQuiDNet has no extra heads to save."""
        if heads:
            raise ConfigError("SQuiDNet saves no extra heads; train it with xmr.train.moments.train_squidnet")
        info = training if training is not None else self.provenance
        extra = {"training": info} if info else None
        return save_checkpoint(directory, FORMAT, asdict(self.config), self, extra=extra)

    @classmethod
    def load(cls, directory: str | Path) -> "SQuiDNet":
        ckpt = load_checkpoint(directory, FORMAT, f"squidnet:{directory}", what="SQuiDNet checkpoint",
                               hint="train one with xmr.train.moments.train_squidnet (see docs/moments.md)")
        provenance = ckpt.config.pop("training", None)
        model = ckpt.load_into(cls(SQuiDNetConfig.coerce(ckpt.config)))
        model.provenance = provenance
        return model


@MOMENT_MODELS.register("squidnet", help="SQuiDNet (Yoon et al., ECCV 2022): selective query-guided debiasing of "
                        "start / end moment prediction; squidnet:DIR loads a trained checkpoint")
def build_squidnet(arg: str | None = None) -> SQuiDNet:
    if arg:
        return SQuiDNet.load(arg)
    return SQuiDNet()


def cooccurrence_decisions(objects, predicates, key_predicates: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """SQuiDNet's co-occurrence table from the training queries' parsed words: ``table[o, p]`` counts queries with
    object ``o`` and predicate ``p``; an object's ``key_predicates`` most frequent predicates are its key ones (ties:
    lower index). Returns the table and, per query, whether its predicate is key for its object (the bias helps)."""
    o = np.asarray(objects, dtype=np.int64)
    p = np.asarray(predicates, dtype=np.int64)
    if o.shape != p.shape or o.ndim != 1 or o.size == 0 or o.min() < 0 or p.min() < 0:
        raise ConfigError("cooccurrence_decisions needs equal-length, non-empty, non-negative object / predicate ids")
    table = np.zeros((o.max() + 1, p.max() + 1), dtype=np.int64)
    np.add.at(table, (o, p), 1)
    key = np.argsort(-table, axis=1, kind="stable")[:, :key_predicates]
    helps = np.array([pi in key[oi] for oi, pi in zip(o, p)], dtype=bool)
    return table, helps


__all__ = ["FORMAT", "MomentBranch", "SQuiDNet", "SQuiDNetConfig", "build_squidnet", "cooccurrence_decisions"]
