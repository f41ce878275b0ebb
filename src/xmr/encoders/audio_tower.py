"""The audio tower: a small CNN from a log-mel window to a unit vector in an index model's **text** space.

The audio expert (:mod:`xmr.experts.audio`) stores one vector per audio window next to an item's visual embedding;
search scores a query's text vector against it, so the tower must map sound into the text space of the model the
index was built with. A tower is therefore trained *for* one model (``AudioTowerConfig.target_model``, checked by
the expert against the index's model spec) with that model's frozen text tower as the target
(:mod:`xmr.train.audio_tower`).

Architecture (``AudioTower``): per-window log-mel (``frames`` x ``n_mels``, :func:`xmr.media.audio.log_mel`), the
window's mean and std normalised away (loudness invariance), two 1-D convolutions over time (mel bins as channels,
stride 2, GELU), adaptive average pooling to ``time_bins`` bins (keeps coarse order: "a beep *then* a hum"),
flatten, a linear projection to ``dim`` and L2 normalisation.

Saved as ``config.json`` (model ``xmr-audio-tower``) + ``model.safetensors``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import config_from_dict
from ..errors import ConfigError

FORMAT = "xmr-audio-tower"


@dataclass
class AudioTowerConfig:
    dim: int = 64  # output dimension = the target model's embedding dimension
    target_model: str = ""  # the model spec whose text space the tower maps into (e.g. "concept", "tiny")
    sr: int = 16000  # sample rate the audio is decoded at
    n_mels: int = 40
    window_seconds: float = 2.0  # one embedding per window ...
    hop_seconds: float = 1.0  # ... windows this far apart
    channels: int = 64
    time_bins: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.dim < 1 or self.n_mels < 4 or self.window_seconds <= 0 or self.hop_seconds <= 0:
            raise ConfigError(f"AudioTowerConfig: need dim >= 1, n_mels >= 4, positive window and hop: {self}")

    @property
    def frames_per_window(self) -> int:
        n, win, hop = (int(round(x * self.sr)) for x in (self.window_seconds, 0.025, 0.010))
        return 1 + max(0, n - win) // hop  # log_mel's frames for one window (25 ms STFT windows, 10 ms hop)


def _build(cfg: AudioTowerConfig):
    import torch
    from torch import nn

    class AudioTower(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(cfg.seed)
            self.conv1 = nn.Conv1d(cfg.n_mels, cfg.channels, 5, stride=2, padding=2)
            self.conv2 = nn.Conv1d(cfg.channels, cfg.channels, 5, stride=2, padding=2)
            self.pool = nn.AdaptiveAvgPool1d(cfg.time_bins)
            self.proj = nn.Linear(cfg.channels * cfg.time_bins, cfg.dim)

        def forward(self, mel):  # (B, frames, n_mels) -> (B, dim), unit rows
            x = mel - mel.mean(dim=(1, 2), keepdim=True)
            x = x / (x.std(dim=(1, 2), keepdim=True) + 1e-5)
            x = x.transpose(1, 2)
            x = nn.functional.gelu(self.conv1(x))
            x = nn.functional.gelu(self.conv2(x))
            x = self.pool(x).flatten(1)
            return nn.functional.normalize(self.proj(x), dim=-1)

    return AudioTower()


class AudioEmbedder:
    """A loaded tower: waveform -> (windows, dim) unit vectors with each window's (start, end) in seconds."""

    def __init__(self, config: AudioTowerConfig, module=None):
        self.config = config
        self.module = module if module is not None else _build(config)
        self.module.eval()

    @classmethod
    def load(cls, directory: str | Path) -> "AudioEmbedder":
        ck = load_checkpoint(directory, FORMAT, f"audio tower {directory}",
                             hint="train one with `xmr train audio` (see docs/experts.md)")
        ck.config.pop("training", None)
        cfg = config_from_dict(AudioTowerConfig, ck.config)
        emb = cls(cfg)
        ck.load_into(emb.module)
        emb.module.eval()
        return emb

    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        return save_checkpoint(directory, FORMAT, asdict(self.config), self.module, extra=extra)

    def windows(self, wave: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """(start, end, log-mel) per window; the last window ends at the end of the audio (a clip shorter than a
        window is zero-padded to one)."""
        from ..media.audio import log_mel

        cfg = self.config
        n_win = int(round(cfg.window_seconds * cfg.sr))
        n_hop = int(round(cfg.hop_seconds * cfg.sr))
        total = wave.size / cfg.sr
        if wave.size <= n_win:
            starts = [0]
        else:
            starts = list(range(0, wave.size - n_win + 1, n_hop))
            if wave.size - (starts[-1] + n_win) > n_hop // 2:  # a tail longer than half a hop gets its own window
                starts.append(wave.size - n_win)
        out = []
        for s in starts:
            seg = wave[s:s + n_win]
            if seg.size < n_win:
                seg = np.pad(seg, (0, n_win - seg.size))
            mel = log_mel(seg, cfg.sr, cfg.n_mels)[: cfg.frames_per_window]
            out.append((s / cfg.sr, min(total, (s + n_win) / cfg.sr), mel))
        return out

    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(mels, dtype=np.float32))).numpy()

    def embed_wave(self, wave: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """(start, end, unit vector) per window of ``wave`` (mono float32 at ``config.sr``)."""
        wins = self.windows(wave)
        vecs = self.embed_mels(np.stack([m for _, _, m in wins]))
        return [(s, e, v) for (s, e, _), v in zip(wins, vecs)]


__all__ = ["AudioEmbedder", "AudioTowerConfig", "FORMAT"]
