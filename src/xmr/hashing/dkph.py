"""DKPH: Dual-stream Knowledge-Preserving Hashing for unsupervised video retrieval (Li et al., ECCV 2022; reference
code IMCCretrieval/DKPH ``model/model.py``, ``train_dkph.py``, ``data.py``).

A video is a sequence of T frame features. A BERT-style transformer encodes the (partly masked) frames; two
streams leave it:

* the **hash stream**: a linear layer over all T hidden states (flattened) gives ``h``; the code is
  ``b = sign(h)`` with a straight-through gradient (the reference's ``BNet``);
* the **temporal stream**: a per-frame linear layer ``t_f`` (frame-level, reconstruction-dependent detail).

A linear decoder reconstructs each frame from ``b + t_f``, so the temporal stream absorbs what only reconstruction
needs and the code keeps what is shared across the video. Self-supervised similarity knowledge shapes the code:

* ``L_recon``: mean squared error of the reconstructed frames (masked input, original target; 15 % of the frames
  masked BERT-style: 80 % zeroed, 10 % replaced by a random frame, 10 % kept);
* ``L_bsim``: ``(s − b₁·b₂ / bits)²`` for a pair of videos, ``s = +1`` for a neighbour (from the similarity
  knowledge) and ``−1`` for a video at middle distance;
* ``L_tsim``: the mean hidden state of a video regresses to its nearest *anchor* (cluster centre of the knowledge
  features), plus 0.1 × a triplet term (margin 0.5) that, for dissimilar pairs, keeps it nearer its own anchor
  than the other video's;
* ``L = L_recon + 0.9·L_tsim + 0.11·L_bsim`` (the reference's weights).

Deviations, on purpose:

* **Knowledge.** The reference downloads a precomputed similarity matrix and anchors from BTH's latent features.
  Here :func:`build_knowledge` makes them from the videos' mean-pooled frame features: the ``neighbours`` nearest
  (cosine) are similar, ranks in the second quarter are "middle distance", and the anchors are k-means centres
  (scikit-learn) of a PCA projection of the features to the hidden width.
* The transformer is torch's ``nn.TransformerEncoder`` (post-norm, GELU) with learned position embeddings, in
  place of the reference's hand-written BERT blocks (same structure: 1 layer, 1 head, hidden 256, FFN 4×).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class DKPHConfig:
    frame_dim: int  # width of the frame features
    num_frames: int = 25  # T frames per video (inputs are uniformly resampled to it)
    bits: int = 16  # code length
    hidden: int = 256  # transformer width
    layers: int = 1  # transformer layers
    heads: int = 1  # attention heads
    dropout: float = 0.1
    mask_prob: float = 0.15  # share of frames masked for reconstruction
    w_tsim: float = 0.9  # weight of L_tsim
    w_bsim: float = 0.11  # weight of L_bsim
    triplet_weight: float = 0.1  # weight of the triplet part of L_tsim
    triplet_margin: float = 0.5

    def __post_init__(self):
        for name in ("frame_dim", "num_frames", "bits", "hidden", "layers", "heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"DKPHConfig.{name} must be a positive integer, got {v!r}")
        if self.hidden % self.heads:
            raise ConfigError("DKPHConfig.hidden must be a multiple of heads")
        if not 0 <= self.mask_prob < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("DKPHConfig.mask_prob and dropout must be in [0, 1)")


@dataclass(frozen=True)
class Knowledge:
    similar: list[np.ndarray]  # per video: indices of its neighbours
    middle: list[np.ndarray]  # per video: indices at middle distance
    anchors: np.ndarray  # (A, hidden) float32
    nearest_anchor: np.ndarray  # (N,) int


def build_knowledge(frames: np.ndarray, hidden: int, *, neighbours: int = 10, anchors: int = 50,
                    seed: int = 0) -> Knowledge:
    """Self-supervised similarity knowledge from (N, T, D) frame features (see the module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = np.asarray(frames, dtype=np.float64).mean(1)
    n = x.shape[0]
    if n < 8:
        raise ConfigError(f"DKPH knowledge needs at least 8 videos, got {n}")
    xn = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    order = np.argsort(-(xn @ xn.T), axis=1, kind="stable")[:, 1:]  # drop self
    k = min(neighbours, n // 4)
    similar = [row[:k] for row in order]
    middle = [row[(n - 1) // 4:(n - 1) // 2] for row in order]
    width = min(hidden, x.shape[1], n)
    z = PCA(n_components=width, random_state=seed).fit_transform(x)
    z = np.pad(z, ((0, 0), (0, hidden - width)))
    km = KMeans(n_clusters=min(anchors, n), n_init=3, random_state=seed).fit(z)
    return Knowledge(similar, middle, km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64))


class DKPH(nn.Module):
    def __init__(self, cfg: DKPHConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.frame_dim, cfg.hidden)
        self.pos = nn.Parameter(torch.zeros(1, cfg.num_frames, cfg.hidden))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, 4 * cfg.hidden, cfg.dropout, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.hash_stream = nn.Linear(cfg.hidden * cfg.num_frames, cfg.bits)
        self.temporal_stream = nn.Linear(cfg.hidden, cfg.bits)
        self.decoder = nn.Linear(cfg.bits, cfg.frame_dim)

    def _check(self, frames: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if frames.ndim != 3 or frames.shape[2] != c.frame_dim:
            raise ConfigError(f"frames must be (B, T, {c.frame_dim}), got {tuple(frames.shape)}")
        if frames.shape[1] != c.num_frames:  # uniform resampling to the trained length
            idx = torch.linspace(0, frames.shape[1] - 1, c.num_frames).round().long()
            frames = frames[:, idx]
        return frames

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, D) -> (codes ±1 with straight-through gradient (B, bits), reconstruction (B, T, D), hidden)."""
        frames = self._check(frames)
        hidden = self.encoder(self.embed(frames) + self.pos)
        h = self.hash_stream(hidden.flatten(1)).clamp(-1, 1)
        codes = h + (torch.where(h >= 0, 1.0, -1.0) - h).detach()
        recon = self.decoder(codes.unsqueeze(1) + self.temporal_stream(hidden))
        return codes, recon, hidden

    @torch.no_grad()
    def codes(self, frames: torch.Tensor) -> np.ndarray:
        """(B, T, D) -> (B, bits) uint8 0/1 codes (eval mode, no masking)."""
        was = self.training
        self.eval()
        try:
            return (self(frames)[0] > 0).to(torch.uint8).numpy()
        finally:
            self.train(was)


def mask_frames(frames: torch.Tensor, pool: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """BERT-style frame masking: each frame with probability ``prob`` -> 80 % zero, 10 % a random frame from
    ``pool`` (N, T, D), 10 % unchanged."""
    b, t, _ = frames.shape
    u = torch.rand((b, t), generator=generator)
    sel = torch.rand((b, t), generator=generator)
    out = frames.clone()
    zero = (u < prob) & (sel < 0.8)
    rand = (u < prob) & (sel >= 0.8) & (sel < 0.9)
    out[zero] = 0
    if rand.any():
        n = int(rand.sum())
        vi = torch.randint(0, pool.shape[0], (n,), generator=generator)
        fi = torch.randint(0, pool.shape[1], (n,), generator=generator)
        out[rand] = pool[vi, fi]
    return out


def dkph_loss(model: DKPH, frames: torch.Tensor, batch: np.ndarray, know: Knowledge,
              generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One training step's loss for the videos ``batch`` (indices into ``frames`` (N, T, D))."""
    c = model.cfg
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    pair, sim = [], []
    for i in batch:
        if rng.random() > 0.5 and len(know.similar[i]):
            pair.append(rng.choice(know.similar[i]))
            sim.append(1.0)
        else:
            pair.append(rng.choice(know.middle[i]))
            sim.append(-1.0)
    pair = np.asarray(pair)
    s = torch.tensor(sim)
    v1, v2 = model._check(frames[batch]), model._check(frames[pair])
    b1, r1, h1 = model(mask_frames(v1, frames, c.mask_prob, generator))
    b2, r2, h2 = model(mask_frames(v2, frames, c.mask_prob, generator))
    bsz = len(batch)
    bsim = ((s - (b1 * b2).sum(1) / c.bits) ** 2).sum() / bsz
    recon = (((r1 - v1) ** 2).sum() + ((r2 - v2) ** 2).sum()) / (2 * c.num_frames * c.frame_dim * bsz)
    anchors = torch.from_numpy(know.anchors)
    n1, n2 = anchors[know.nearest_anchor[batch]], anchors[know.nearest_anchor[pair]]
    m1, m2 = h1.mean(1), h2.mean(1)
    w = (0.5 * (1 - s)).unsqueeze(1)
    tsim = (((m1 - n1) ** 2).sum() + ((m2 - n2) ** 2).sum()) / (c.hidden * bsz) \
        + c.triplet_weight * F.triplet_margin_loss(m1, w * n1, w * n2, margin=c.triplet_margin)
    loss = recon + c.w_tsim * tsim + c.w_bsim * bsim
    return {"loss": loss, "recon": recon.detach(), "tsim": tsim.detach(), "bsim": bsim.detach()}
