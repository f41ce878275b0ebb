"""ECLIPSE (Lin et al., ECCV 2022, "ECLIPSE: Efficient Long-range Video Retrieval using Sight and Sound"): a few
sparse frames plus dense, cheap audio instead of many decoded frames, joined by an audiovisual attention block.

Implemented (the paper's audiovisual block, at token level over per-frame / per-audio-chunk features):

* video stream: ``k`` sparse frame tokens (gated projection to width D); audio stream: ``m`` dense audio-chunk
  tokens (``m`` >> ``k``), each token carrying its relative time;
* one **audiovisual block**: (1) temporal self-attention among the frame tokens; (2) **audio-to-video**
  cross-attention: each frame token attends to the audio tokens, restricted to those within ``window`` (relative
  time) of the frame, and adds what it reads (the paper injects audio into the video pathway this way); (3)
  **video-to-audio** cross-attention: audio tokens attend to all frame tokens (the paper's dual pathway updates the
  audio stream from the video); (4) MLPs on both; pre-norm residuals throughout;
* video embedding: the mean of the updated frame tokens, a gated projection, L2-normalised; text: learned word
  embeddings (time-split as in :mod:`.eao`) pooled the same way; trained with symmetric InfoNCE text <-> video.
  ``encode(video=...)`` without audio skips (2)-(3): the same model as a video-only baseline.

Deviations: the paper builds the block into every layer of CLIP's ViT (frame patches, a pre-trained audio
encoder) and fine-tunes on ActivityNet etc.; here one block over synthetic per-frame / per-chunk features, from
scratch, width 64. Token features ``c`` with time ``t`` enter as ``[c (1 - t), c t]`` (as in :mod:`.eao`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import config_from_dict
from ..errors import ConfigError
from ..registries import MULTIMODAL_MODELS
from .eao import _Gated, _timed, nce, tokenize

FORMAT = "xmr-eclipse"


@dataclass
class EclipseConfig:
    video_dim: int = 193  # frame token features (+1 time)
    audio_dim: int = 81  # audio chunk token features (+1 time)
    vocab: list = field(default_factory=list)
    word_dim: int = 64
    width: int = 64
    heads: int = 4
    window: float = 0.25  # audio-to-video attention reaches audio tokens within this relative time of a frame
    embed_dim: int = 64
    tau: float = 0.05
    seed: int = 0
    frames: int = 4  # sparse frame tokens per clip (or segment) when a file is embedded (xmr.video.av, eclipse:DIR)
    chunks: int = 24  # dense audio tokens per clip (or segment)


@MULTIMODAL_MODELS.register("eclipse", help="ECLIPSE: sparse frames + dense audio, audiovisual attention block "
                                            "(audio-to-video and video-to-audio cross-attention), ECCV 2022")
class Eclipse(nn.Module):
    name = "eclipse"
    Config = EclipseConfig

    def __init__(self, config: EclipseConfig):
        super().__init__()
        if not config.vocab:
            raise ConfigError("Eclipse needs a vocabulary (EclipseConfig.vocab): build it with xmr.heads.eao."
                              "build_vocab(training captions)")
        self.config = config
        torch.manual_seed(config.seed)
        D, H = config.width, config.heads
        self.words = nn.Embedding(len(config.vocab), config.word_dim)
        self.tok_t = _Gated(2 * config.word_dim, D)
        self.tok_v = _Gated(2 * (config.video_dim - 1), D)
        self.tok_a = _Gated(2 * (config.audio_dim - 1), D)
        self.n_vv, self.n_av, self.n_va, self.n_a = (nn.LayerNorm(D) for _ in range(4))
        self.self_v = nn.MultiheadAttention(D, H, batch_first=True)
        self.a2v = nn.MultiheadAttention(D, H, batch_first=True)
        self.v2a = nn.MultiheadAttention(D, H, batch_first=True)
        self.mlp_v = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))
        self.mlp_a = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))
        self.out_v = _Gated(D, config.embed_dim)
        self.out_a = _Gated(D, config.embed_dim)
        self.out_t = _Gated(D, config.embed_dim)
        self._index = {w: i for i, w in enumerate(config.vocab)}

    def _text(self, texts) -> torch.Tensor:
        toks = [[self._index.get(w, 0) for w in tokenize(t)] or [0] for t in texts]
        n = max(len(t) for t in toks)
        ids = torch.zeros(len(toks), n, dtype=torch.long)
        mask = torch.zeros(len(toks), n)
        for i, t in enumerate(toks):
            ids[i, :len(t)] = torch.tensor(t)
            mask[i, :len(t)] = 1
        L = mask.sum(1, keepdim=True).clamp(min=2)
        pos = (torch.arange(n).float()[None, :] / (L - 1)).clamp(max=1.0).unsqueeze(-1)
        h = self.tok_t(_timed(torch.cat([self.words(ids), pos], -1)))
        pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.out_t(pooled), dim=-1)

    def encode(self, text=None, video=None, audio=None) -> torch.Tensor:
        """Text -> its embedding; video (B, k, dv) [+ audio (B, m, da)] -> the video embedding (audio injected
        through the audiovisual block); audio alone -> the pooled audio stream."""
        if text is not None:
            if video is not None or audio is not None:
                raise ConfigError("Eclipse encodes text and video separately (a dual encoder): give one")
            return self._text(text)
        if video is None and audio is None:
            raise ConfigError("Eclipse.encode needs text, video or audio")
        a = None
        if audio is not None:
            audio = torch.as_tensor(audio, dtype=torch.float32)
            a = self.tok_a(_timed(audio))
        if video is None:
            a = a + self.mlp_a(a)
            return F.normalize(self.out_a(a.mean(1)), dim=-1)
        video = torch.as_tensor(video, dtype=torch.float32)
        v = self.tok_v(_timed(video))
        y = self.n_vv(v)
        v = v + self.self_v(y, y, y, need_weights=False)[0]
        if a is not None:
            tv, ta = video[..., -1], audio[..., -1]  # (B, k), (B, m) relative times
            far = (tv.unsqueeze(2) - ta.unsqueeze(1)).abs() > self.config.window  # (B, k, m): True = not attended
            far = far & ~(far.all(2, keepdim=True))  # a frame with no audio in reach sees all of it
            mask = far.repeat_interleave(self.config.heads, 0)
            yv, ya = self.n_av(v), self.n_a(a)
            v = v + self.a2v(yv, ya, ya, attn_mask=mask, need_weights=False)[0]
            yv = self.n_va(v)
            a = a + self.v2a(ya, yv, yv, need_weights=False)[0]
            a = a + self.mlp_a(a)
        v = v + self.mlp_v(v)
        return F.normalize(self.out_v(v.mean(1)), dim=-1)

    def loss(self, text, video, audio=None) -> torch.Tensor:
        return nce(self.encode(text=text), self.encode(video=video, audio=audio), self.config.tau)

    def save(self, directory, extra: dict | None = None) -> Path:
        return save_checkpoint(directory, FORMAT, asdict(self.config), self, extra=extra)

    @classmethod
    def load(cls, directory) -> "Eclipse":
        ck = load_checkpoint(directory, FORMAT, f"eclipse:{directory}", hint="train one with xmr train-av --model "
                             "eclipse --captions FILE --out DIR", what="ECLIPSE model (xmr train-av --model eclipse)")
        ck.config.pop("training", None)
        m = cls(config_from_dict(EclipseConfig, ck.config))
        ck.load_into(m)
        return m.eval()


def eclipse_macs(cfg: EclipseConfig, frames: int, chunks: int, audio: bool) -> int:
    """Multiply-accumulates of one video's forward pass through the block (projections, attention, MLPs, head),
    counted from the shapes (token feature extraction not included: that is the decode + feature cost)."""
    D = cfg.width
    macs = frames * 2 * (cfg.video_dim - 1) * D * 2  # gated token projection of the frames (lin + gate)
    macs += 4 * frames * D * D + 2 * frames * frames * D  # self-attention: q k v o + scores / mix
    if audio:
        macs += chunks * 2 * (cfg.audio_dim - 1) * D * 2
        macs += 2 * frames * D * D + 2 * chunks * D * D + 2 * frames * chunks * D  # audio-to-video
        macs += 2 * chunks * D * D + 2 * frames * D * D + 2 * frames * chunks * D  # video-to-audio
        macs += chunks * 4 * D * D  # audio MLP
    macs += frames * 4 * D * D + D * cfg.embed_dim * 2  # video MLP, output head
    return int(macs)


__all__ = ["Eclipse", "EclipseConfig", "eclipse_macs"]
