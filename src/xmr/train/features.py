"""The feature cache: a frozen encoder runs once over a data set's images and captions; later runs (every epoch,
every seed, every loss) read ``$XMR_CACHE/train-features/<key>.safetensors``.

The key hashes the encoder's description and spec, every media path with its size and modification time, and every
caption, so a changed file or model is re-encoded, never served stale. A file that cannot be decoded stops the run
with :class:`~xmr.errors.MediaError` (nothing is replaced by a placeholder)."""
from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from ..paths import cache_dir

log = logging.getLogger(__name__)


def _key(encoder, dataset) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"spec": encoder.spec, "describe": encoder.describe()}, sort_keys=True,
                        default=str).encode())
    for p in dataset.media:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for t in dataset.texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:32]


def cached_features(encoder, dataset, *, batch_size: int = 16, show_progress: bool | None = None,
                    use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """-> (images (N, D), captions (T, D), whether the cache was hit): ``encoder``'s L2-normalised outputs, float32."""
    from safetensors.numpy import load_file, save_file

    path = cache_dir("train-features", _key(encoder, dataset) + ".safetensors")
    if use_cache and path.is_file():
        d = load_file(str(path))
        return d["images"], d["texts"], True
    log.info("encoding %d images and %d captions with frozen %s (once; cached in %s)", len(dataset), dataset.num_texts,
             encoder.spec, path.parent)
    img = encoder.encode_images(dataset.media, batch_size=batch_size, show_progress=show_progress)
    txt = encoder.encode_text(dataset.texts, show_progress=show_progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"images": np.ascontiguousarray(img), "texts": np.ascontiguousarray(txt)}, str(tmp))
        os.replace(tmp, path)
    return img, txt, False


__all__ = ["cached_features"]
