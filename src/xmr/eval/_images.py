"""Encode an evaluation gallery of images with decoding and preprocessing overlapped with inference.

The indexer's prefetch path (:mod:`xmr.index.prefetch`): worker threads decode the next batches' images (and, for an
encoder with the split API, build its input views) while the model encodes this batch. Unlike the indexer, images are
decoded at full size (no JPEG draft mode) and batched exactly as before, so the embeddings, and every metric, are
the ones the sequential path gives (tests/test_eval_prefetch.py compares the similarity matrices).

Bad files are collected, never dropped: once one is seen, nothing more is encoded, but the remaining files are still
decoded so the error can name every bad file.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import MediaError

#: decoded pixels the workers may hold at once (the indexer's per-batch budget)
MAX_PREFETCH_PIXELS = 64_000_000


def default_workers() -> int:
    """One worker per core, at most 4 (as the indexer)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(4, cores))


def _no_hash(path: str) -> str:
    return ""  # evaluation needs no content hash; load_image does every check on the file itself


def encode_images_prefetched(media: list[str], encoder, batch_size: int, bad: list[str], bar=None,
                             workers: int | None = None, ahead: int = 1) -> np.ndarray | None:
    """(N, dim) float32 embeddings of ``media`` (paths), ``batch_size`` per model call, the next ``ahead`` batches
    decoded by ``workers`` threads meanwhile; None (and ``bad`` filled with ``"path: reason"``) when a file does
    not decode. ``workers=0``: the sequential reference path (decode, then encode, batch by batch)."""
    from ..index.prefetch import PixelBudget, Prefetcher, Prepared
    from ..media.image import load_image

    batches = [media[s : s + batch_size] for s in range(0, len(media), batch_size)]
    split = bool(getattr(encoder, "split_preprocessing", False))
    out: list[np.ndarray] = []
    if workers == 0:
        def sequential():
            for b in batches:
                prepared = []
                for p in b:
                    try:
                        prepared.append(Prepared(image=load_image(p)))
                    except MediaError as e:
                        prepared.append(Prepared(media_error=e))
                yield b, prepared
        stream = sequential()
    else:
        budget = PixelBudget(MAX_PREFETCH_PIXELS)
        setup = {"draft": None, "budget": budget,
                 "preprocess": encoder.preprocess_images if split else list}
        stream = iter(Prefetcher(batches, lambda p: (p, True), lambda: setup,
                                 workers=workers or default_workers(), ahead=ahead, hash_file=_no_hash))
    for b, prepared in stream:
        for p, prep in zip(b, prepared):
            if prep.media_error is not None:
                bad.append(f"{prep.media_error.path}: {prep.media_error.reason}")
            elif prep.error is not None:
                bad.append(f"{p}: {prep.error}")
        if not bad:
            if workers != 0 and split:
                out.append(encoder.encode_preprocessed([x.model_input for x in prepared]))
            else:
                images = [x.image if x.image is not None else x.model_input for x in prepared]
                out.append(encoder.encode_images(images, batch_size=batch_size, show_progress=False))
        if bar is not None:
            bar.update(len(b))
    if bad:
        return None
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)
