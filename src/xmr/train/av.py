"""``xmr train-av``: train an audio-visual model (Everything at Once or ECLIPSE,
:data:`xmr.registries.MULTIMODAL_MODELS`) on video files with sound and their captions, for ``xmr index --model eao:DIR`` / ``eclipse:DIR``.

Each file is read by :func:`xmr.video.av.read_spans` (the whole file: ``frames`` frame tokens, ``chunks`` audio
tokens), exactly as the index reads it later, and paired with the **first** caption its line gives (the
``captions.jsonl`` of ``xmr synth videos --sound``: "a red circle with a high beep then a low hum"; one caption
per clip, so a batch never holds the same clip twice as a false negative). Then :func:`xmr.train.eao.train_eao`
(the combinatorial loss) or :func:`xmr.train.eao.train_eclipse` (InfoNCE text <-> video with audio), and the model
is saved with the token settings and the training record.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from ..errors import ConfigError, MediaError

MODELS = ("eao", "eclipse")


def first_captions(path) -> list[tuple[str, str]]:
    """(absolute media path, its first caption) per file of a captions JSON-lines file, in file order."""
    from .fusion import read_captions

    seen: dict[str, str] = {}
    for media, caption in read_captions(path):
        seen.setdefault(media, caption)
    return list(seen.items())


def clip_tokens(pairs, frames: int, chunks: int, side: int = 8):
    """(video tokens (N, frames, side*side*3+1), audio tokens (N, chunks, 81)) of the files; ConfigError naming a
    file that cannot be read or has no usable sound track (these models train on clips with sound)."""
    from ..video.av import read_spans

    probe = SimpleNamespace(video_dim=side * side * 3 + 1, audio_dim=81, frames=frames, chunks=chunks)
    V, A = [], []
    for media, _ in pairs:
        try:
            _, _, toks, _ = read_spans(media, probe)
        except MediaError as e:
            raise ConfigError(f"{media}: {e.reason}; remove it from the captions file") from None
        v, a = toks[0]
        if a is None:
            raise ConfigError(f"{media}: no audio track (or under {0.025 + 0.02 * chunks:.2f} s of sound); xmr "
                              "train-av trains on clips with sound: remove it from the captions file")
        V.append(v)
        A.append(a)
    return np.stack(V), np.stack(A)


def train_av(model: str, captions, out, *, epochs: int = 40, lr: float = 2e-3, batch_size: int = 32, seed: int = 0,
             frames: int | None = None, chunks: int | None = None):
    """Train ``model`` (eao / eclipse) on the files of ``captions``; save it to ``out`` (a new or empty folder).
    Returns (model, record). ``frames`` / ``chunks``: tokens per clip (default: the model config's, 8 / 8 for eao,
    4 / 24 for eclipse)."""
    from ..heads.eao import EaoConfig
    from ..heads.eclipse import EclipseConfig
    from .eao import train_eao, train_eclipse

    if model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; give a new one")
    base = EaoConfig() if model == "eao" else EclipseConfig()
    frames = int(frames or base.frames)
    chunks = int(chunks or base.chunks)
    if not (1 <= frames <= 256 and 1 <= chunks <= 1024):
        raise ConfigError(f"--frames must be 1..256 and --chunks 1..1024, got {frames}, {chunks}")
    pairs = first_captions(captions)
    if len(pairs) < 2:
        raise ConfigError(f"--captions {captions}: needs at least 2 files to contrast, got {len(pairs)}")
    V, A = clip_tokens(pairs, frames, chunks)
    texts = [c for _, c in pairs]
    cfg = {"frames": frames, "chunks": chunks}
    data = {"captions": str(captions), "clips": len(pairs), "lr": lr, "batch_size": batch_size, "seed": seed}
    if model == "eao":
        m, record = train_eao(texts, V, A, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, config=cfg)
    else:
        m, record = train_eclipse(texts, V, A, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, config=cfg)
    record = {**record, **data}
    m.save(out, extra={"training": record})
    return m, record


__all__ = ["MODELS", "clip_tokens", "first_captions", "train_av"]
