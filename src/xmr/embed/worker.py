"""Encode one unit into one output shard: the work a Ray actor (or the plain loop) does.

:class:`ShardEncoder` holds the encoder (built once per worker) and is called with units; it reads the unit's
inputs on the worker, decodes and encodes them in batches, skips bad inputs with their reason (never a placeholder
vector) and writes the shard files. Its ``__call__`` has the Ray Data ``map_batches`` shape (a dict of columns in,
a dict of columns out), so the same object runs in an actor pool and in the plain loop.
"""
from __future__ import annotations

import json
import logging

import numpy as np

from ..errors import ConfigError, MediaError, MissingExtraError
from .shards import ShardRecord, write_shard
from .sources import Unit, iter_records

log = logging.getLogger(__name__)


class ShardEncoder:
    """Callable ``{"unit": [json, ...]} -> {"result": [json, ...]}``; each result is a :class:`ShardRecord` dict
    plus the encoder's ``dim`` (None when nothing was encoded) and ``error`` (the unit could not be read)."""

    def __init__(self, model: str, out: str, dtype: str, batch_size: int = 8, device: str | None = None,
                 threads: int | None = None):
        if threads:  # a Ray actor gets num_cpus CPUs: torch should use as many threads, not the machine's count
            import torch

            torch.set_num_threads(threads)
        from ..encoders import create_encoder

        self.encoder = create_encoder(model, device=device)
        self.out, self.dtype, self.batch_size = out, dtype, batch_size

    def __call__(self, batch: dict) -> dict:
        results = [json.dumps(self.encode_unit(Unit.from_dict(json.loads(str(u))))) for u in batch["unit"]]
        return {"result": np.array(results, dtype=object)}

    def encode_unit(self, unit: Unit) -> dict:
        rec = ShardRecord(unit.n, unit.label)
        vecs: list[np.ndarray] = []  # (1, dim) rows
        metas: list[dict] = []
        pending: list[tuple] = []  # (image, meta row) waiting for a full batch

        def keep(v: np.ndarray, meta: dict) -> None:
            if np.isfinite(v).all():
                vecs.append(v[None])
                metas.append(meta)
            else:  # never written: an index built from these shards would refuse the file
                rec.skipped.append({"path": meta["image_path"], "reason": "the model gave a non-finite vector"})

        def flush():
            if pending:
                v = self.encoder.encode_images([im for im, _ in pending], batch_size=self.batch_size,
                                               show_progress=False)
                for row, (_, meta) in zip(v, pending):
                    keep(row, meta)
                pending.clear()

        error = None
        try:
            for r in iter_records(unit):
                if r.error is not None:
                    rec.skipped.append({"path": r.image_path, "reason": r.error})
                    continue
                if r.media == "video":
                    flush()  # keeps the rows in input order
                    try:
                        v = self.encode_video(r.load())
                    except MediaError as e:
                        rec.skipped.append({"path": r.image_path, "reason": e.reason})
                        continue
                    keep(v, {"image_path": r.image_path, "media_type": "video", **r.meta})
                    continue
                try:
                    im = r.load()
                except MediaError as e:
                    rec.skipped.append({"path": r.image_path, "reason": e.reason})
                    continue
                pending.append((im, {"image_path": r.image_path, "media_type": "image", **r.meta}))
                if len(pending) >= self.batch_size:
                    flush()
            flush()
        except (ConfigError, MissingExtraError) as e:  # the input shard is unreadable (a broken tar / parquet
            error = str(e)  # file), or videos need PyAV: the shard is not marked done, a re-run retries it
        if error is not None:
            return {**rec.__dict__, "done": False, "error": error, "dim": self.encoder.dim}
        if metas:
            write_shard(self.out, unit.n, np.concatenate(vecs), metas, self.dtype)
        rec.count, rec.done = len(metas), True
        return {**rec.__dict__, "error": None, "dim": self.encoder.dim}


    def encode_video(self, src) -> np.ndarray:
        """(dim,) vector of one video: the default :class:`~xmr.video.VideoIndexConfig` sampling pooled as ``xmr
        index`` pools it (meanP, or the encoder's head); segment vectors are not kept (one row per file).
        ``src``: a path, or ``(extension, bytes)`` written to a temporary file for PyAV."""
        from ..video import VideoIndexConfig, embed_video

        cfg = VideoIndexConfig()
        if isinstance(src, tuple):
            import os
            import tempfile

            fd, tmp = tempfile.mkstemp(suffix="." + src[0], prefix="xmr-embed-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(src[1])
                return embed_video(tmp, self.encoder, cfg, batch_size=self.batch_size).vector
            finally:
                os.unlink(tmp)
        return embed_video(src, self.encoder, cfg, batch_size=self.batch_size).vector


__all__ = ["ShardEncoder"]
