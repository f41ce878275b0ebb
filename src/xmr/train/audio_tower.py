"""Train an audio tower (:mod:`xmr.encoders.audio_tower`) into a model's text space, on sounds and their captions.

Objective: the target model's text tower is frozen; the unique captions of the training set are embedded once,
``T`` (C x dim, unit rows). For a batch of audio windows with embeddings ``a_i`` (unit) and caption indices
``y_i``, the loss is the cross-entropy of ``softmax(a_i T^T / tau)`` against ``y_i`` (``tau`` = 0.05): InfoNCE with
every training caption as a negative, not only the batch's, since many clips share a caption. Augmentation per
step: gain in [0.5, 1.5], added Gaussian noise (std 0 .. 0.02), a circular shift of up to 0.1 s.

Data: ``(wave, caption)`` pairs (mono float32 at the tower's rate); :func:`sound_pairs` makes them from the
synthetic sound clips (:mod:`xmr.synth.sounds`), caption = the clip's sound caption.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..encoders.audio_tower import AudioEmbedder, AudioTowerConfig
from ..errors import ConfigError


def sound_pairs(n: int = 400, seed: int = 0, seconds: float = 2.0) -> list[tuple[np.ndarray, str]]:
    """``n`` synthetic sound tracks (:func:`xmr.synth.sounds.generate_sound_clips`) with their sound captions."""
    from ..synth.sounds import SynthSoundConfig, generate_sound_clips

    clips = generate_sound_clips(SynthSoundConfig(n=n, seed=seed, seconds=seconds, size=48, fps=1))
    return [(c["audio"], c["sound"]) for c in clips]


def train_audio_tower(pairs: Sequence[tuple[np.ndarray, str]], encoder, target_model: str, *, epochs: int = 30,
                      lr: float = 3e-3, batch_size: int = 32, tau: float = 0.05, seed: int = 0,
                      config: dict | None = None) -> tuple[AudioEmbedder, dict]:
    """Fit a tower mapping each wave to its caption's text vector under ``encoder`` (the index model, spec
    ``target_model``). Returns the embedder and a training record (loss per epoch, final train accuracy)."""
    import torch

    if not pairs:
        raise ConfigError("train_audio_tower: no (audio, caption) pairs")
    if not encoder.capabilities.text:
        raise ConfigError(f"model {target_model!r} has no text tower: an audio tower maps sound into text space")
    captions = sorted({c for _, c in pairs})
    T = np.asarray(encoder.encode_text(captions, show_progress=False), dtype=np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True) + 1e-12
    cfg = AudioTowerConfig(dim=int(T.shape[1]), target_model=target_model, seed=seed, **(config or {}))
    emb = AudioEmbedder(cfg)
    n_win = int(round(cfg.window_seconds * cfg.sr))
    waves = np.stack([np.pad(w[:n_win], (0, max(0, n_win - w.size))) for w, _ in pairs]).astype(np.float32)
    y = torch.tensor([captions.index(c) for _, c in pairs])
    Tt = torch.from_numpy(T)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(emb.module.parameters(), lr=lr, weight_decay=1e-4)
    record = {"loss": [], "captions": len(captions), "pairs": len(pairs), "epochs": epochs, "tau": tau}
    t0 = time.perf_counter()
    emb.module.train()
    for _ in range(epochs):
        order = rng.permutation(len(pairs))
        total = 0.0
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            mels = np.stack([_mel(_augment(waves[i], rng, cfg.sr), cfg) for i in idx])
            a = emb.module(torch.from_numpy(mels))
            loss = torch.nn.functional.cross_entropy(a @ Tt.T / tau, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        record["loss"].append(round(total / len(order), 4))
    emb.module.eval()
    mels = np.stack([_mel(w, cfg) for w in waves])
    pred = (emb.embed_mels(mels) @ T.T).argmax(1)
    record["train_accuracy"] = round(float((pred == y.numpy()).mean()), 4)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return emb, record


def _augment(w: np.ndarray, rng, sr: int) -> np.ndarray:
    w = w * rng.uniform(0.5, 1.5) + rng.normal(0, rng.uniform(0, 0.02), w.size).astype(np.float32)
    return np.roll(w, int(rng.integers(-int(0.1 * sr), int(0.1 * sr) + 1))).astype(np.float32)


def _mel(w: np.ndarray, cfg: AudioTowerConfig) -> np.ndarray:
    from ..media.audio import log_mel

    return log_mel(w, cfg.sr, cfg.n_mels)[: cfg.frames_per_window]


__all__ = ["sound_pairs", "train_audio_tower"]
