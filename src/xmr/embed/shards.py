"""Embedding shards in clip-retrieval's layout (the contract with ``xmr index --from-embeddings`` and other tools)::

    OUT/img_emb/img_emb_<n>.npy             (rows, dim) float16 or float32, rows L2-normalised
    OUT/metadata/metadata_<n>.parquet       one row per vector, same order: image_path, caption, key, ...
    OUT/embed_info.json                     model spec, dim, dtype, source, plan, shard list, counts, skipped files

``<n>`` is the shard number (0, 1, ...; not zero-padded, as clip-retrieval writes it). A shard whose inputs were all
bad has no files (its entry in ``embed_info.json`` says ``count: 0``). Each file is written to a temporary name
and renamed, metadata first and vectors last; ``embed_info.json`` (also replaced atomically) marks a shard done
only after both are in place, so a killed run leaves whole shards and a re-run recomputes at most the ones in
flight.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .._deps import require
from ..errors import ConfigError

INFO_FILE = "embed_info.json"
FORMAT = "clip-retrieval"
DTYPES = ("float16", "float32")


def emb_path(out: str | os.PathLike, n: int) -> Path:
    return Path(out) / "img_emb" / f"img_emb_{n}.npy"


def meta_path(out: str | os.PathLike, n: int) -> Path:
    return Path(out) / "metadata" / f"metadata_{n}.parquet"


@dataclass
class ShardRecord:
    """One output shard, as ``embed_info.json`` lists it."""

    n: int
    input: str  # what it was made from: a tar / parquet shard, or "<source> files 0-9999"
    count: int = 0  # vectors written
    skipped: list[dict] = field(default_factory=list)  # [{"path", "reason"}] inputs left out of this shard
    done: bool = False


@dataclass
class EmbedInfo:
    """``OUT/embed_info.json``: what the shards hold and how far a run got."""

    model: str  # encoder spec
    dtype: str  # "float16" / "float32"
    source: str  # absolute path of what was embedded (folder, manifest, tar / parquet shards, or an xmr index)
    source_kind: str  # "folder" | "manifest" | "wds" | "parquet" | "index"
    plan_digest: str  # sha256 of the planned inputs: a re-run resumes only an identical plan
    dim: int | None = None  # known once a shard is written
    shard_size: int | None = None  # files per shard for folders / manifests / exports (None: one per input shard)
    format: str = FORMAT
    shards: list[ShardRecord] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def skipped(self) -> list[dict]:
        return [x for s in self.shards for x in s.skipped]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["count"] = self.count
        d["num_skipped"] = len(self.skipped)
        d["done"] = all(s.done for s in self.shards)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EmbedInfo":
        d = {k: v for k, v in d.items() if k not in ("count", "num_skipped", "done")}
        d["shards"] = [ShardRecord(**s) for s in d.get("shards", [])]
        return cls(**d)


def write_info(out: str | os.PathLike, info: EmbedInfo) -> None:
    path = Path(out) / INFO_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(info.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_info(out: str | os.PathLike) -> EmbedInfo | None:
    """The ``embed_info.json`` of ``out``, or None when there is none. ConfigError when it is damaged."""
    path = Path(out) / INFO_FILE
    if not path.exists():
        return None
    try:
        return EmbedInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise ConfigError(f"{path}: not an xmr embed_info.json ({e}); give another --out or delete it") from None


def _table(rows: Sequence[dict]):
    """pyarrow table of ``rows``; a column whose values mix types (json metadata) is written as strings."""
    pa = require("pyarrow", "scale", "pyarrow")
    cols: dict[str, list] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, [])
    for k in cols:
        vals = [r.get(k) for r in rows]
        kinds = {type(v) for v in vals if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            vals = [None if v is None else str(v) for v in vals]
        cols[k] = vals
    return pa.table(cols)


def write_shard(out: str | os.PathLike, n: int, vectors: np.ndarray, metadata: Sequence[dict], dtype: str) -> None:
    """Write shard ``n``: ``vectors`` (rows, dim) as ``dtype`` and one metadata row per vector (``image_path``
    required), each file atomically, metadata first."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown embedding dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if vectors.ndim != 2 or len(vectors) != len(metadata) or not len(metadata):
        raise ValueError(f"shard {n}: {vectors.shape} vectors for {len(metadata)} metadata rows")
    if any("image_path" not in r for r in metadata):
        raise ValueError(f"shard {n}: every metadata row needs 'image_path'")
    pq = require("pyarrow.parquet", "scale", "pyarrow")
    mp, ep = meta_path(out, n), emb_path(out, n)
    mp.parent.mkdir(parents=True, exist_ok=True)
    ep.parent.mkdir(parents=True, exist_ok=True)
    tmp = mp.with_name(mp.name + f".tmp{os.getpid()}")
    pq.write_table(_table(metadata), tmp)
    os.replace(tmp, mp)
    tmp = ep.with_name(f"tmp{os.getpid()}_{ep.name}")  # np.save keeps a name ending in .npy as it is
    np.save(tmp, np.ascontiguousarray(vectors, dtype=np.dtype(dtype)))
    os.replace(tmp, ep)


def shard_files_exist(out: str | os.PathLike, n: int) -> bool:
    return emb_path(out, n).is_file() and meta_path(out, n).is_file()


def iter_shards(out: str | os.PathLike) -> Iterator[tuple[int, np.ndarray, list[dict]]]:
    """(n, vectors (rows, dim) as stored, metadata rows) of every finished shard of ``out``, by shard number.

    A reader for tests and round trips; ``xmr index --from-embeddings`` has its own, with its checks."""
    info = read_info(out)
    if info is None:
        raise ConfigError(f"{out}: no {INFO_FILE} (not written by xmr embed / xmr export)")
    pq = require("pyarrow.parquet", "scale", "pyarrow")
    for s in sorted(info.shards, key=lambda s: s.n):
        if s.done and s.count:
            yield s.n, np.load(emb_path(out, s.n)), pq.read_table(meta_path(out, s.n)).to_pylist()


__all__ = ["EmbedInfo", "ShardRecord", "write_shard", "write_info", "read_info", "iter_shards", "emb_path",
           "meta_path", "DTYPES", "INFO_FILE"]
