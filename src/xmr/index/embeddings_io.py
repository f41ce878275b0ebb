"""Read embeddings made elsewhere (``xmr index --from-embeddings DIR``), in the layouts others write.

* clip-retrieval's (``clip-retrieval inference``, and ``xmr export``)::

      DIR/img_emb/img_emb_0.npy          (n0, d) float16 or float32
      DIR/metadata/metadata_0.parquet    n0 rows, column ``image_path`` (row i describes vector i)
      DIR/img_emb/img_emb_1.npy ...

  shards are paired by their number ``<n>``;
* parquet files with a vector column: ``DIR/*.parquet`` (or one ``.parquet`` file) with ``image_path`` and one list
  column of numbers named ``embedding``, ``vector``, ``img_emb`` or ``emb`` (or the only list column).

Every shard is checked before any of its rows is handed out (:func:`import_embeddings` checks them all before it
writes the first row), and a bad one is refused with a
:class:`~xmr.errors.XmrIndexError` naming the file: a missing metadata file, a row count that differs from the
metadata's, a width that differs from the other shards' (or the index's), a dtype that is not float16/float32, NaN or
infinite values, a zero vector, a missing ``image_path`` column or an empty path. Vectors are returned as float32,
L2-normalised (xmr scores by inner product of unit vectors; clip-retrieval writes unit vectors already, and how many
rows needed normalising is reported).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .._deps import require
from ..errors import XmrIndexError

#: model spec recorded for an index imported without ``--model`` (vector queries only)
EXTERNAL_SPEC = "external"
VECTOR_COLUMNS = ("embedding", "vector", "img_emb", "emb")
_SHARD = re.compile(r"img_emb_(\d+)\.npy$")


@dataclass
class Shard:
    """One file (or pair of files) of vectors with their paths."""

    vectors: Path  # .npy, or the .parquet holding both
    metadata: Path  # .parquet with image_path
    rows: int
    dim: int


@dataclass
class ImportStats:
    shards: int = 0
    rows: int = 0
    normalised: int = 0  # rows whose norm was not 1 (within 1e-3) and were scaled to unit length


def _pq():
    return require("pyarrow.parquet", "vectors", "pyarrow")


def _parquet_rows(path: Path) -> int:
    try:
        return _pq().ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError with long messages
        raise XmrIndexError(f"{path}: not a readable parquet file ({str(e).splitlines()[0][:160]})") from None


def _vector_column(path: Path, schema) -> str:
    import pyarrow as pa

    lists = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
             or pa.types.is_large_list(f.type)]
    for name in VECTOR_COLUMNS:
        if name in lists:
            return name
    if len(lists) == 1:
        return lists[0]
    raise XmrIndexError(f"{path}: no vector column (a list column named one of {', '.join(VECTOR_COLUMNS)}); "
                        f"list columns found: {lists or 'none'}")


def find_shards(folder: str | Path) -> list[Shard]:
    """The shards of ``folder`` in order, each checked for its pairing, row counts and width (not yet its values)."""
    root = Path(folder)
    if not root.exists():
        raise XmrIndexError(f"--from-embeddings {root}: no such folder")
    shards: list[Shard] = []
    if root.is_dir() and (root / "img_emb").is_dir():
        npys = sorted((p for p in (root / "img_emb").iterdir() if _SHARD.search(p.name)),
                      key=lambda p: int(_SHARD.search(p.name).group(1)))
        if not npys:
            raise XmrIndexError(f"{root / 'img_emb'}: no img_emb_<n>.npy files")
        for npy in npys:
            n = _SHARD.search(npy.name).group(1)
            meta = root / "metadata" / f"metadata_{n}.parquet"
            if not meta.exists():
                raise XmrIndexError(f"{npy}: its metadata file {meta} is missing")
            try:
                arr = np.load(npy, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise XmrIndexError(f"{npy}: not a readable .npy array ({e})") from None
            if arr.ndim != 2 or arr.dtype not in (np.float16, np.float32):
                raise XmrIndexError(f"{npy}: expected a 2-D float16 or float32 array, got shape {arr.shape} "
                                    f"dtype {arr.dtype}")
            rows = _parquet_rows(meta)
            if rows != arr.shape[0]:
                raise XmrIndexError(f"{npy}: {arr.shape[0]} vectors but {meta} has {rows} rows")
            shards.append(Shard(npy, meta, int(arr.shape[0]), int(arr.shape[1])))
    else:
        files = [root] if root.is_file() else sorted(root.glob("*.parquet"))
        if not files:
            raise XmrIndexError(f"--from-embeddings {root}: neither clip-retrieval's layout (img_emb/img_emb_<n>.npy "
                                f"+ metadata/metadata_<n>.parquet) nor .parquet files with a vector column")
        for f in files:
            rows = _parquet_rows(f)
            schema = _pq().read_schema(f)
            col = _vector_column(f, schema)
            first = _pq().ParquetFile(f).read_row_group(0, columns=[col]).column(0) if rows else None
            dim = len(first[0].as_py()) if rows else 0
            shards.append(Shard(f, f, rows, dim))
    dims = {s.dim for s in shards if s.rows}
    if len(dims) > 1:
        first = next(s for s in shards if s.rows)
        bad = next(s for s in shards if s.rows and s.dim != first.dim)
        raise XmrIndexError(f"{bad.vectors}: vectors of width {bad.dim}, but {first.vectors} has {first.dim}")
    return shards


def _paths(meta: Path) -> tuple[list[str], list[str]]:
    """(image_path per row, media_type per row: the ``media_type`` column xmr embed / xmr export write, else image)."""
    table = _pq().read_table(meta)
    if "image_path" not in table.column_names:
        raise XmrIndexError(f"{meta}: no image_path column (columns: {', '.join(table.column_names)})")
    paths = table.column("image_path").to_pylist()
    for i, p in enumerate(paths):
        if not isinstance(p, str) or not p:
            raise XmrIndexError(f"{meta}: row {i} has no image_path")
    types = table.column("media_type").to_pylist() if "media_type" in table.column_names else ["image"] * len(paths)
    for i, t in enumerate(types):
        if t not in ("image", "video"):
            raise XmrIndexError(f"{meta}: row {i} has media_type {t!r} (image or video)")
    return paths, types


def embed_info(folder: str | Path) -> dict | None:
    """``embed_info.json`` of a folder written by ``xmr embed`` / ``xmr export`` (its ``model`` and ``dim``), or None."""
    import json

    path = Path(folder) / "embed_info.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise XmrIndexError(f"{path}: not readable JSON ({e})") from None
    return info if isinstance(info, dict) else None


def _vectors(shard: Shard) -> np.ndarray:
    if shard.vectors.suffix == ".npy":
        return np.load(shard.vectors, mmap_mode="r", allow_pickle=False)
    table = _pq().read_table(shard.vectors)
    col = _vector_column(shard.vectors, table.schema)
    try:
        return np.asarray(table.column(col).to_pylist(), dtype=np.float32).reshape(shard.rows, -1)
    except (ValueError, TypeError):
        raise XmrIndexError(f"{shard.vectors}: column {col!r} holds vectors of different lengths or "
                            f"non-numbers") from None


def read_shard(shard: Shard, dim: int | None, stats: ImportStats) -> tuple[list[str], np.ndarray, list[str]]:
    """(paths, (rows, dim) float32 unit vectors, media types) of one shard, after every check (module docstring)."""
    where = shard.vectors
    if dim is not None and shard.rows and shard.dim != dim:
        raise XmrIndexError(f"{where}: vectors of width {shard.dim}, but the index holds width {dim}")
    v = _vectors(shard)
    if v.ndim != 2 or v.shape[0] != shard.rows:
        raise XmrIndexError(f"{where}: expected {shard.rows} vectors, got shape {v.shape}")
    paths, types = _paths(shard.metadata)
    if len(paths) != shard.rows:
        raise XmrIndexError(f"{where}: {shard.rows} vectors but {shard.metadata} has {len(paths)} rows")
    x = np.asarray(v, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise XmrIndexError(f"{where}: row {int(np.argmin(finite))} has NaN or infinite values "
                            f"({int((~finite).sum())} such rows)")
    norms = np.linalg.norm(x, axis=1)
    if (norms == 0).any():
        raise XmrIndexError(f"{where}: row {int(np.argmin(norms))} is a zero vector (no direction to search by)")
    off = np.abs(norms - 1) > 1e-3
    stats.normalised += int(off.sum())
    x = x / norms[:, None]
    stats.shards += 1
    stats.rows += len(paths)
    return paths, np.ascontiguousarray(x, dtype=np.float32), types


def iter_embeddings(folder: str | Path, dim: int | None = None, stats: ImportStats | None = None
                    ) -> Iterator[tuple[Shard, list[str], np.ndarray, list[str]]]:
    """(shard, paths, vectors, media types) for every shard of ``folder`` in order; every shard's pairing, row counts and width
    are checked before the first is read, each shard's values before it is yielded."""
    stats = stats if stats is not None else ImportStats()
    shards = find_shards(folder)
    for s in shards:
        if dim is not None and s.rows and s.dim != dim:
            raise XmrIndexError(f"{s.vectors}: vectors of width {s.dim}, but the index holds width {dim}")
    for s in shards:
        yield (s, *read_shard(s, dim, stats))


__all__ = ["EXTERNAL_SPEC", "ImportStats", "Shard", "embed_info", "find_shards", "iter_embeddings", "read_shard"]


def import_embeddings(folder: str | Path, index_path: str | Path, *, spec: str | None = None,
                      backend: dict | None = None, batch: int = 10_000, progress=None) -> dict:
    """Add every vector of ``folder`` to the index at ``index_path`` (created if needed) as an image item whose path
    is its ``image_path`` (media type from a ``media_type`` column when there is one); a path already in the index
    gets the new vector. ``spec``: the model the vectors came from (recorded, so text queries work when xmr can load
    it); None takes the model named by ``embed_info.json`` (written by ``xmr embed`` / ``xmr export``), else the
    index's, else records :data:`EXTERNAL_SPEC` (vector queries only). ``backend``: a ``{"name", "config"}`` vector backend to record. Commits ``batch`` rows per transaction;
    the backend is brought up to date at the end. Returns a summary."""
    import time

    from .indexer import index_lock
    from .store import IndexStore, NewItem

    say = progress or (lambda m: None)
    root = str(Path(folder).absolute())
    shards = find_shards(folder)  # checked before the index is created or touched
    if not shards or not any(s.rows for s in shards):
        raise XmrIndexError(f"--from-embeddings {folder}: no vectors")
    dim = next(s.dim for s in shards if s.rows)
    for shard in shards:  # every value checked before the first row is written: a bad shard changes nothing
        read_shard(shard, dim, ImportStats())
        say(f"checked {shard.vectors.name}")
    stats = ImportStats()
    t0 = time.perf_counter()
    index_path = Path(index_path).absolute()
    info = embed_info(folder) if Path(folder).is_dir() else None
    made_by = (info or {}).get("model")
    if spec is not None and made_by and made_by != spec:
        raise XmrIndexError(f"{Path(folder) / 'embed_info.json'}: the vectors were made with {made_by!r}, not "
                            f"{spec!r} (--model)")
    with index_lock(index_path), IndexStore(index_path, create=True) as store:
        want = spec or made_by or store.model_spec or EXTERNAL_SPEC
        store.bind_model(want, dim, {"imported_from": root} if want == EXTERNAL_SPEC else None)
        if backend is not None:
            store.set_vector_backend(backend)
        for shard in shards:
            paths, vecs, types = read_shard(shard, dim, stats)
            for s in range(0, len(paths), batch):
                store.add_batch([NewItem(p, root, 0, 0.0, "", t, None, None, v) for p, v, t in
                                 zip(paths[s : s + batch], vecs[s : s + batch], types[s : s + batch])])
            say(f"imported {shard.vectors.name}: {stats.rows} rows so far")
        t1 = time.perf_counter()
        store.sync_faiss(progress=say)
        total = store.count()
        state = store.backend_state("items") or {}
    return {"index": str(index_path), "from": root, "model": want, "shards": stats.shards, "rows": stats.rows,
            "normalised": stats.normalised, "items": total, "import_s": round(t1 - t0, 2),
            "backend_s": round(time.perf_counter() - t1, 2), "backend": state.get("backend")}


__all__ += ["import_embeddings"]
