"""``parquet:PATH`` — parquet shards of image-text pairs (img2dataset ``--output_format parquet`` and the like)::

    PATH/00000.parquet   columns: key, caption, url, ..., and the image (bytes) or a local path

``PATH`` is a folder of ``*.parquet`` shards (sorted by name) or one ``.parquet`` file. Columns read:

- the image: a binary column named ``jpg`` / ``png`` / ``webp`` / ``image`` / ``image_bytes`` (img2dataset writes
  ``jpg``), or a struct column ``image`` with a ``bytes`` field (Hugging Face ``datasets``' Image feature); else a
  local path column ``image_path`` / ``path`` / ``filepath`` (relative paths resolve against the shard's folder).
  A shard with only ``url`` holds no image: download it first (img2dataset) — refused with that message.
- caption: ``caption`` / ``text`` / ``txt``; key: ``key`` (else ``<shard stem>/<row>``); other scalar columns
  (url, width, height, status, ...) are kept as metadata by ``xmr embed``.
- rows whose img2dataset ``status`` is not ``success`` hold no image and are skipped with their ``error_message``.

Read with pyarrow (extra ``xmr[scale]``), one record batch at a time. As a retrieval dataset, in-memory images are
extracted once into ``$XMR_CACHE/parquet/<digest>/``; rows without a caption are left out and counted in the log.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Mapping

from .._deps import require
from ..errors import ConfigError
from ..paths import cache_dir
from .base import DATASETS, Item, RetrievalDataset, take_options
from .webdataset import extract_image, list_shard_files

log = logging.getLogger(__name__)

BYTES_COLUMNS = ("jpg", "png", "webp", "image", "image_bytes")
PATH_COLUMNS = ("image_path", "path", "filepath")
CAPTION_COLUMNS = ("caption", "text", "txt")


@dataclass
class ParquetRow:
    """One row: the image as bytes (``data``, with its extension) or as a local ``path``; or ``error`` when the row
    holds no image (img2dataset status not ``success``)."""

    shard: str
    key: str
    caption: str | None
    meta: dict
    data: bytes | None = None
    ext: str = "jpg"
    path: str | None = None
    error: str | None = None


def _pq():
    return require("pyarrow.parquet", "scale", "pyarrow")


def _image_column(schema, shard: str) -> tuple[str, str]:
    """("bytes" | "struct" | "path", column name) of the shard's image."""
    pa = require("pyarrow", "scale", "pyarrow")
    names = set(schema.names)
    for c in BYTES_COLUMNS:
        if c in names:
            t = schema.field(c).type
            if pa.types.is_binary(t) or pa.types.is_large_binary(t):
                return "bytes", c
            if pa.types.is_struct(t) and any(t.field(i).name == "bytes" for i in range(t.num_fields)):
                return "struct", c
    for c in PATH_COLUMNS:
        if c in names:
            return "path", c
    hint = (" It holds only URLs: download the images first, e.g. img2dataset --output_format parquet"
            if "url" in names else "")
    raise ConfigError(f"{shard}: no image column (binary {'/'.join(BYTES_COLUMNS)} or a path column "
                      f"{'/'.join(PATH_COLUMNS)}); columns are {', '.join(schema.names)}.{hint}")


def check_parquet_shard(shard: str) -> None:
    """Read ``shard``'s schema (its footer only) and refuse it now when it has no image column."""
    try:
        schema = _pq().read_schema(shard)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid / OSError for foreign or damaged files
        raise ConfigError(f"{shard}: not a readable parquet file ({e})") from None
    _image_column(schema, shard)


def iter_parquet_rows(shard: str, batch_rows: int = 256) -> Iterator[ParquetRow]:
    """Rows of one parquet shard, in order. ConfigError naming the shard when it cannot be read."""
    pq = _pq()
    try:
        pf = pq.ParquetFile(shard)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid / OSError for foreign or damaged files
        raise ConfigError(f"{shard}: not a readable parquet file ({e})") from None
    kind, col = _image_column(pf.schema_arrow, shard)
    names = pf.schema_arrow.names
    cap_col = next((c for c in CAPTION_COLUMNS if c in names), None)
    stem = os.path.splitext(os.path.basename(shard))[0]
    base = os.path.dirname(shard)
    row_no = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            for r in batch.to_pylist():
                key = str(r["key"]) if r.get("key") is not None else f"{stem}/{row_no}"
                row_no += 1
                cap = r.get(cap_col) if cap_col else None
                cap = cap.strip() if isinstance(cap, str) and cap.strip() else None
                meta = {k: v for k, v in r.items()
                        if k not in (col, cap_col, "key") and (v is None or isinstance(v, (str, int, float, bool)))}
                row = ParquetRow(shard, key, cap, meta)
                status = r.get("status")
                if status is not None and status != "success":
                    row.error = f"no image (status {status}: {r.get('error_message') or 'no message'})"
                elif kind == "path":
                    p = r.get(col)
                    row.path = (os.path.join(base, p) if not os.path.isabs(p) else p) if isinstance(p, str) else None
                    if row.path is None:
                        row.error = f"empty {col!r}"
                else:
                    v = r.get(col)
                    data = v.get("bytes") if kind == "struct" and isinstance(v, dict) else v
                    if kind == "struct" and isinstance(v, dict) and v.get("path"):
                        row.ext = os.path.splitext(v["path"])[1].lstrip(".").lower() or "jpg"
                    elif col in ("png", "webp"):
                        row.ext = col
                    if not data:
                        row.error = f"empty image column {col!r}"
                    row.data = data or None
                yield row
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged row group raises from pyarrow mid-file
        raise ConfigError(f"{shard}: cannot read the parquet shard past row {row_no} ({e})") from None


@DATASETS.register("parquet", help="parquet shards of image-text pairs (img2dataset layout): parquet:DIR or FILE")
def load_parquet(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    take_options("parquet", options, ())
    if split is not None:
        raise ConfigError(f"parquet:{arg}: parquet shards have no splits (asked for {split!r}); "
                          f"put each split in its own folder of shards")
    shards = list_shard_files(arg, "parquet", "parquet shards")
    items, dropped = [], 0
    for shard in shards:
        st = os.stat(shard)
        digest = hashlib.sha256(f"{shard}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        folder = str(cache_dir("parquet", f"{os.path.basename(shard)}-{digest}"))
        for r in iter_parquet_rows(shard):
            if r.caption is None or r.error is not None:
                dropped += 1
                continue
            media = r.path if r.path is not None else extract_image(folder, r.key, r.ext, r.data)
            items.append(Item(media=media, captions=(r.caption,), id=r.key))
    if dropped:
        log.info("parquet:%s: left out %d rows without a caption or an image", arg, dropped)
    if not items:
        raise ConfigError(f"parquet:{arg}: no row has both an image and a caption")
    return RetrievalDataset.from_items(f"parquet:{os.path.basename(os.path.abspath(arg))}", items,
                                       caption_policy=caption_policy, source_files=shards)


__all__ = ["ParquetRow", "check_parquet_shard", "iter_parquet_rows", "load_parquet"]
