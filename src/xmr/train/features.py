"""The feature cache: a frozen encoder runs once over a data set's images and captions; later runs (every epoch,
every seed, every loss) read ``$XMR_CACHE/train-features/{images,texts}-<key>.safetensors``.

Image keys hash the encoder's description and spec and the *content* (SHA-256) of every image in order, caption keys
the encoder and every caption, so a changed file or model is re-encoded, never served stale, and copies of the same
pictures (e.g. ``xmr synth images`` sets that differ only in their corrupted captions) share one entry. A file that
cannot be decoded stops the run with :class:`~xmr.errors.MediaError` (nothing is replaced by a placeholder)."""
from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from ..paths import cache_dir

log = logging.getLogger(__name__)


def _local_files(spec: str) -> list:
    """(name, size, mtime_ns) of the files a spec's local path argument names (``tiny:DIR``, ``trained:DIR``,
    ``hf:DIR``, a config .json): a folder re-written by another run (new weights, same config) must not be served
    the old run's features. Hub ids and names that are not paths give []."""
    from pathlib import Path

    arg = spec.partition(":")[2]
    try:
        path = Path(arg).expanduser() if arg else None
        if path is None or not path.exists():
            return []
        files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
        return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    except OSError:
        return []


def _encoder_key(encoder) -> bytes:
    d = {"spec": encoder.spec, "describe": encoder.describe()}
    files = _local_files(encoder.spec)
    if files:  # only then, so the keys of models named without a path (concept, tiny) stay what they were
        d["files"] = files
    return json.dumps(d, sort_keys=True, default=str).encode()


def _file_digest(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _cached(kind: str, key: str, compute, use_cache: bool) -> tuple[np.ndarray, bool]:
    from safetensors.numpy import load_file, save_file

    path = cache_dir("train-features", f"{kind}-{key}.safetensors")
    if use_cache and path.is_file():
        return load_file(str(path))["x"], True
    x = np.ascontiguousarray(compute(), dtype=np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        save_file({"x": x}, str(tmp))
        os.replace(tmp, path)
    return x, False


def _image_key(encoder, dataset) -> str:
    h = hashlib.sha256(_encoder_key(encoder))
    for p in dataset.media:
        h.update(_file_digest(p))
    return h.hexdigest()[:32]


def _text_key(encoder, dataset) -> str:
    h = hashlib.sha256(_encoder_key(encoder))
    for t in dataset.texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:32]


def cached_image_features(encoder, dataset, *, batch_size: int = 16, show_progress: bool | None = None,
                          use_cache: bool = True) -> tuple[np.ndarray, bool]:
    """-> (images (N, D), whether it came from the cache): ``encoder``'s L2-normalised image outputs, float32."""
    def images():
        log.info("encoding %d images with frozen %s (once; cached)", len(dataset), encoder.spec)
        return encoder.encode_images(dataset.media, batch_size=batch_size, show_progress=show_progress)

    return _cached("images", _image_key(encoder, dataset), images, use_cache)


def cached_text_features(encoder, dataset, *, show_progress: bool | None = None,
                         use_cache: bool = True) -> tuple[np.ndarray, bool]:
    """-> (captions (T, D), whether it came from the cache): ``encoder``'s L2-normalised text outputs, float32."""
    def texts():
        log.info("encoding %d captions with frozen %s (once; cached)", dataset.num_texts, encoder.spec)
        return encoder.encode_text(dataset.texts, show_progress=show_progress)

    return _cached("texts", _text_key(encoder, dataset), texts, use_cache)


def cached_features(encoder, dataset, *, batch_size: int = 16, show_progress: bool | None = None,
                    use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """-> (images (N, D), captions (T, D), whether both came from the cache): ``encoder``'s L2-normalised outputs,
    float32."""
    img, hit_i = cached_image_features(encoder, dataset, batch_size=batch_size, show_progress=show_progress,
                                       use_cache=use_cache)
    txt, hit_t = cached_text_features(encoder, dataset, show_progress=show_progress, use_cache=use_cache)
    return img, txt, hit_i and hit_t


__all__ = ["cached_features", "cached_image_features", "cached_text_features"]
