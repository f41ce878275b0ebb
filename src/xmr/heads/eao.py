"""Everything at Once (Shvetsova et al., CVPR 2022, "Everything at Once - Multi-modal Fusion Transformer for Video
Retrieval"): one fusion transformer over any subset of {video, audio, text} tokens.

Implemented (paper section 3):

* **token projection**: each modality's input tokens ``x`` (N_m x d_m) go through its own gated projection
  ``g(x) = (W x + b) * sigmoid(W_g (W x + b) + b_g)`` to a common width D (the paper's "gated" token projection);
* **fusion transformer**: ONE shared transformer block (pre-norm, multi-head self-attention + MLP) runs over the
  concatenation of the tokens of whichever modalities are given, so every token attends to every other one;
  **no position and no modality encoding** are added (the paper leaves them out on purpose, so the same block
  fuses any combination and any lengths);
* **embedding**: per given modality, the masked mean of its output tokens, through that modality's own gated
  projection to the shared space (the paper's "individual projections"), averaged over the given modalities and
  L2-normalised. ``encode(text=...)`` is the text embedding, ``encode(video=..., audio=...)`` the fused one.
* **combinatorial contrastive loss** (paper eq. 2-3): for modalities {t, v, a},
  ``L = NCE(t, v) + NCE(t, a) + NCE(v, a) + NCE(t, va) + NCE(v, ta) + NCE(a, tv)``: every single modality against
  every other single one and against the fusion of the other two. ``NCE(x, y)`` is the symmetric InfoNCE over the
  batch with temperature ``tau`` (the paper's contrastive NCE loss, both directions).

Deviations (all documented in docs/experts.md): inputs are small synthetic features (frame thumbnails, log-mel
chunks, learned word embeddings over a vocabulary saved with the model) instead of S3D / DAVEnet / word2vec tokens;
each video / audio token carries its relative time t, and each word its relative position, and its features c
enter the token projection as ``[c (1 - t), c t]`` (the paper adds no position encoding; its tokens come from temporal CNNs, ours carry no order, and our captions
say "X then Y", which a bag of words cannot tell from "Y then X"); width, heads and MLP ratio are tiny; no
HowTo100M pre-training: trained directly on the captioned synthetic clips (supervised, not self-supervised).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import config_from_dict
from ..errors import ConfigError
from ..registries import MULTIMODAL_MODELS

FORMAT = "xmr-eao"
MODALITIES = ("text", "video", "audio")


@dataclass
class EaoConfig:
    video_dim: int = 193  # per-frame token features (+1 time feature)
    audio_dim: int = 81  # per-chunk token features (+1 time feature)
    vocab: list = field(default_factory=list)  # text tokens: words (lower case); index 0 is "unknown"
    word_dim: int = 64
    width: int = 128  # D
    heads: int = 4
    mlp_ratio: float = 2.0
    embed_dim: int = 128  # the shared embedding space
    tau: float = 0.05
    seed: int = 0
    frames: int = 8  # frame tokens per clip (or segment) when a file is embedded (xmr.video.av, eao:DIR)
    chunks: int = 8  # audio tokens per clip (or segment)


class _Gated(nn.Module):
    """Gated embedding unit: (W x + b) * sigmoid(W_g (W x + b) + b_g)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(d_out, d_out)

    def forward(self, x):
        y = self.lin(x)
        return y * torch.sigmoid(self.gate(y))


@MULTIMODAL_MODELS.register("eao", help="Everything at Once: one fusion transformer over any subset of video, "
                                        "audio and text tokens, combinatorial contrastive loss (CVPR 2022)")
class EverythingAtOnce(nn.Module):
    name = "eao"
    Config = EaoConfig

    def __init__(self, config: EaoConfig):
        super().__init__()
        if not config.vocab:
            raise ConfigError("EverythingAtOnce needs a vocabulary (EaoConfig.vocab): build it from the training "
                              "captions with build_vocab()")
        self.config = config
        torch.manual_seed(config.seed)
        D = config.width
        self.words = nn.Embedding(len(config.vocab), config.word_dim)
        self.tok = nn.ModuleDict({"text": _Gated(2 * config.word_dim, D),
                                  "video": _Gated(2 * (config.video_dim - 1), D),
                                  "audio": _Gated(2 * (config.audio_dim - 1), D)})
        self.norm1 = nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, config.heads, batch_first=True)
        self.norm2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, int(D * config.mlp_ratio)), nn.GELU(),
                                 nn.Linear(int(D * config.mlp_ratio), D))
        self.out = nn.ModuleDict({m: _Gated(D, config.embed_dim) for m in MODALITIES})
        self._index = {w: i for i, w in enumerate(config.vocab)}

    # ---- inputs --------------------------------------------------------------------------------------------
    def text_ids(self, texts) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) word ids and (B, L) mask; unknown words map to id 0 ("unknown")."""
        toks = [[self._index.get(w, 0) for w in tokenize(t)] or [0] for t in texts]
        n = max(len(t) for t in toks)
        ids = torch.zeros(len(toks), n, dtype=torch.long)
        mask = torch.zeros(len(toks), n, dtype=torch.bool)
        for i, t in enumerate(toks):
            ids[i, :len(t)] = torch.tensor(t)
            mask[i, :len(t)] = True
        return ids, mask

    def encode(self, text=None, video=None, audio=None) -> torch.Tensor:
        """Unit embeddings (B, embed_dim) of the given modalities fused. ``text``: list of strings; ``video`` /
        ``audio``: (B, N, d) float tensors (all tokens valid)."""
        parts, owners = [], []
        if text is not None:
            ids, mask = self.text_ids(text)
            L = mask.sum(1, keepdim=True).clamp(min=2).float()
            pos = (torch.arange(ids.shape[1]).float()[None, :] / (L - 1)).clamp(max=1.0).unsqueeze(-1)
            parts.append((self.tok["text"](_timed(torch.cat([self.words(ids), pos], -1))), mask))
            owners.append("text")
        for name, x in (("video", video), ("audio", audio)):
            if x is not None:
                x = torch.as_tensor(x, dtype=torch.float32)
                parts.append((self.tok[name](_timed(x)), torch.ones(x.shape[:2], dtype=torch.bool)))
                owners.append(name)
        if not parts:
            raise ConfigError("EverythingAtOnce.encode needs at least one of text, video, audio")
        h = torch.cat([p for p, _ in parts], 1)
        mask = torch.cat([m for _, m in parts], 1)
        y = self.norm1(h)
        a, _ = self.attn(y, y, y, key_padding_mask=~mask, need_weights=False)
        h = h + a
        h = h + self.mlp(self.norm2(h))
        outs, s = [], 0
        for (p, m), name in zip(parts, owners):
            n = p.shape[1]
            mm = m.unsqueeze(-1).float()
            pooled = (h[:, s:s + n] * mm).sum(1) / mm.sum(1).clamp(min=1)
            outs.append(self.out[name](pooled))
            s += n
        return F.normalize(torch.stack(outs).mean(0), dim=-1)

    # ---- the combinatorial loss ----------------------------------------------------------------------------
    def combinatorial_loss(self, text, video, audio) -> tuple[torch.Tensor, dict]:
        """Paper eq. 3 over one batch of aligned (text, video, audio): singles vs singles and vs the other pairs."""
        inputs = {"text": text, "video": video, "audio": audio}
        emb = {(m,): self.encode(**{m: inputs[m]}) for m in MODALITIES}
        for a, b in itertools.combinations(MODALITIES, 2):
            emb[(a, b)] = self.encode(**{a: inputs[a], b: inputs[b]})
        terms = {}
        for a, b in itertools.combinations(MODALITIES, 2):
            terms[f"{a}-{b}"] = nce(emb[(a,)], emb[(b,)], self.config.tau)
        for m in MODALITIES:
            rest = tuple(x for x in MODALITIES if x != m)
            terms[f"{m}-{'+'.join(rest)}"] = nce(emb[(m,)], emb[rest], self.config.tau)
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    # ---- save / load ---------------------------------------------------------------------------------------
    def save(self, directory, extra: dict | None = None) -> Path:
        return save_checkpoint(directory, FORMAT, asdict(self.config), self, extra=extra)

    @classmethod
    def load(cls, directory) -> "EverythingAtOnce":
        ck = load_checkpoint(directory, FORMAT, f"eao:{directory}", hint="train one with xmr train-av --model eao "
                             "--captions FILE --out DIR", what="Everything at Once model (xmr train-av --model eao)")
        ck.config.pop("training", None)
        m = cls(config_from_dict(EaoConfig, ck.config))
        ck.load_into(m)
        return m.eval()


def _timed(x: torch.Tensor) -> torch.Tensor:
    """Tokens whose last feature is their relative time t in [0, 1] -> ``[c (1 - t), c t]`` (c: the other
    features): what a token says early and late lands in different features, so mean pooling keeps order."""
    c, t = x[..., :-1], x[..., -1:]
    return torch.cat([c * (1 - t), c * t], -1)


def nce(x: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE between aligned unit rows of x and y."""
    logits = x @ y.T / tau
    target = torch.arange(len(x))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", str(text).lower())


def build_vocab(texts) -> list[str]:
    return ["<unk>"] + sorted({w for t in texts for w in tokenize(t)})


def frame_tokens(frames: np.ndarray, side: int = 8, max_tokens: int = 8) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (k, side*side*3 + 1) tokens: up to ``max_tokens`` evenly spaced frames, each an
    area-averaged ``side`` x ``side`` colour thumbnail in [0, 1], plus its relative time."""
    t = frames.shape[0]
    idx = np.linspace(0, t - 1, min(max_tokens, t)).round().astype(int)
    h, w = frames.shape[1] // side * side, frames.shape[2] // side * side
    f = frames[idx, :h, :w].astype(np.float32) / 255.0
    thumbs = f.reshape(len(idx), side, h // side, side, w // side, 3).mean((2, 4)).reshape(len(idx), -1)
    return np.concatenate([thumbs, (idx / max(1, t - 1))[:, None]], 1).astype(np.float32)


def audio_tokens(wave: np.ndarray, sr: int = 16000, chunks: int = 8, n_mels: int = 40) -> np.ndarray:
    """Mono wave -> (chunks, 2 * n_mels + 1) tokens: the log-mel's per-chunk mean and std (loudness-normalised
    over the clip), plus the chunk's relative time."""
    from ..media.audio import log_mel

    mel = log_mel(wave, sr, n_mels)
    mel = (mel - mel.mean()) / (mel.std() + 1e-5)
    parts = np.array_split(mel, chunks, axis=0)
    feats = np.stack([np.concatenate([p.mean(0), p.std(0)]) for p in parts])
    return np.concatenate([feats, (np.arange(chunks) / max(1, chunks - 1))[:, None]], 1).astype(np.float32)


__all__ = ["EaoConfig", "EverythingAtOnce", "audio_tokens", "build_vocab", "frame_tokens", "nce", "tokenize"]
