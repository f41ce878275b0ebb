"""Train Everything at Once (:mod:`xmr.heads.eao`) on captioned clips with sound: the combinatorial loss over
(text, video, audio) batches, AdamW, the per-term losses recorded per epoch, the model saved as
``config.json`` + ``model.safetensors`` with the training record."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..errors import ConfigError


def train_eao(texts: Sequence[str], video: np.ndarray, audio: np.ndarray, *, epochs: int = 40, lr: float = 2e-3,
              batch_size: int = 32, seed: int = 0, config: dict | None = None, out=None):
    """``texts`` (N), ``video`` (N, Tv, dv) and ``audio`` (N, Ta, da) token arrays of aligned clips -> (model,
    record). ``out``: a folder to save the model in."""
    import torch

    from ..heads.eao import EaoConfig, EverythingAtOnce, build_vocab

    if not (len(texts) == len(video) == len(audio)) or len(texts) < 2:
        raise ConfigError(f"train_eao: need >= 2 aligned clips, got {len(texts)} texts, {len(video)} videos, "
                          f"{len(audio)} audio tracks")
    cfg = EaoConfig(video_dim=video.shape[2], audio_dim=audio.shape[2], vocab=build_vocab(texts), seed=seed,
                    **(config or {}))
    model = EverythingAtOnce(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    V = torch.from_numpy(np.ascontiguousarray(video, dtype=np.float32))
    A = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    record = {"epochs": epochs, "clips": len(texts), "loss": [], "terms": []}
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(texts))
        tot, terms, n = 0.0, {}, 0
        for s in range(0, len(order) - 1, batch_size):
            idx = order[s:s + batch_size]
            if len(idx) < 2:
                continue
            loss, parts = model.combinatorial_loss([texts[i] for i in idx], V[idx], A[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
            for k, v in parts.items():
                terms[k] = terms.get(k, 0.0) + v * len(idx)
        record["loss"].append(round(tot / n, 4))
        record["terms"].append({k: round(v / n, 4) for k, v in terms.items()})
    model.eval()
    record["seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        model.save(out, extra={"training": record})
    return model, record


def train_eclipse(texts: Sequence[str], video: np.ndarray, audio: np.ndarray | None, *, epochs: int = 40,
                  lr: float = 2e-3, batch_size: int = 32, seed: int = 0, config: dict | None = None):
    """ECLIPSE (:mod:`xmr.heads.eclipse`) on aligned (text, frames[, audio]) tokens, symmetric InfoNCE text <->
    video; ``audio=None`` trains the same block as a video-only model. Returns (model, record)."""
    import torch

    from ..heads.eao import build_vocab
    from ..heads.eclipse import Eclipse, EclipseConfig

    cfg = EclipseConfig(video_dim=video.shape[2], audio_dim=81 if audio is None else audio.shape[2],
                        vocab=build_vocab(texts), seed=seed, **(config or {}))
    model = Eclipse(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    V = torch.from_numpy(np.ascontiguousarray(video, dtype=np.float32))
    A = None if audio is None else torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    record = {"epochs": epochs, "clips": len(texts), "loss": []}
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(texts))
        tot, n = 0.0, 0
        for s in range(0, len(order) - 1, batch_size):
            idx = order[s:s + batch_size]
            if len(idx) < 2:
                continue
            loss = model.loss([texts[i] for i in idx], V[idx], None if A is None else A[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        record["loss"].append(round(tot / n, 4))
    model.eval()
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return model, record


__all__ = ["train_eao", "train_eclipse"]
