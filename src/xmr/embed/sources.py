"""What ``xmr embed`` reads, cut into units of work (one unit = one output shard).

A SOURCE is one of:

- ``folder``: a folder of images and videos (walked like ``xmr index``: recursive, hidden files left out), sorted by
  path and cut into units of ``shard_size`` files;
- ``manifest``: an xmr JSONL manifest (:mod:`xmr.data.manifest`): its items in order, cut into units of
  ``shard_size``; the first caption and the ``id`` go into the metadata;
- ``wds``: webdataset tar shards (:mod:`xmr.data.webdataset`): one unit per tar;
- ``parquet``: parquet shards (:mod:`xmr.data.parquet`): one unit per parquet file.

A :class:`Unit` is plain JSON (it travels to Ray workers); :func:`iter_records` turns it into :class:`Record` s on the
worker, so images are read where they are encoded. The plan is deterministic (sorted paths), and its digest is kept
in ``embed_info.json``: a re-run resumes only when the source still plans the same units.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import ConfigError
from ..media import media_type_of

KINDS = ("folder", "manifest", "wds", "parquet")


@dataclass(frozen=True)
class Unit:
    """One output shard's inputs: ``kind`` plus either ``shard`` (a tar / parquet file) or ``rows`` (for folders:
    paths; for manifests: [path, caption, key])."""

    n: int
    kind: str
    label: str  # shown in progress and embed_info.json
    shard: str | None = None
    rows: tuple = ()

    def to_dict(self) -> dict:
        return {"n": self.n, "kind": self.kind, "label": self.label, "shard": self.shard, "rows": list(self.rows)}

    @classmethod
    def from_dict(cls, d: dict) -> "Unit":
        rows = tuple(tuple(r) if isinstance(r, list) else r for r in d["rows"])
        return cls(d["n"], d["kind"], d["label"], d["shard"], rows)


@dataclass
class Record:
    """One input. Images: ``load()`` gives the decoded RGB image or raises :class:`~xmr.errors.MediaError`.
    Videos (``media == "video"``): ``load()`` gives a local path, or ``(extension, bytes)`` for a tar member.
    ``error`` set means the input is known to be unusable before decoding (a failed download, an unreadable
    folder entry)."""

    image_path: str  # clip-retrieval's column name, for videos too
    load: Callable | None
    meta: dict = field(default_factory=dict)  # caption, key, url, ... (clip-retrieval metadata columns)
    error: str | None = None
    media: str = "image"  # "image" | "video"


def detect_kind(source: str) -> str:
    """``folder`` / ``manifest`` / ``wds`` / ``parquet`` from what ``source`` is."""
    if not os.path.exists(source):
        raise ConfigError(f"{source}: no such file or folder")
    if os.path.isfile(source):
        for ext, kind in ((".jsonl", "manifest"), (".tar", "wds"), (".parquet", "parquet")):
            if source.endswith(ext):
                return kind
        raise ConfigError(f"{source}: not a source xmr embed reads (a folder, a .jsonl manifest, a .tar webdataset "
                          f"shard or a .parquet shard)")
    names = os.listdir(source)
    if any(n.endswith(".tar") for n in names):
        return "wds"
    if any(n.endswith(".parquet") for n in names):
        return "parquet"
    return "folder"


def plan_units(source: str, kind: str | None = None, shard_size: int = 10_000) -> tuple[str, list[Unit]]:
    """(kind, units) for ``source``; ConfigError for an unreadable or empty source."""
    from ..data.manifest import read_manifest
    from ..data.webdataset import list_shard_files

    source = os.path.abspath(os.path.expanduser(source))
    kind = kind or detect_kind(source)
    if kind not in KINDS:
        raise ConfigError(f"unknown source kind {kind!r}; use one of {', '.join(KINDS)}")
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
    if kind in ("wds", "parquet"):
        ext = "tar" if kind == "wds" else "parquet"
        files = list_shard_files(source, ext, "webdataset shards" if kind == "wds" else "parquet shards")
        if kind == "parquet":  # a shard with only URLs is refused before any worker starts
            from ..data.parquet import check_parquet_shard

            for f in files:
                check_parquet_shard(f)
        return kind, [Unit(n, kind, os.path.basename(f), shard=f) for n, f in enumerate(files)]
    if kind == "manifest":
        rows = [(it.media, it.captions[0], it.id) for it in read_manifest(source)]
    else:
        if not os.path.isdir(source):
            raise ConfigError(f"{source} is not a folder")
        rows = _walk_folder(source)
    if not rows:
        raise ConfigError(f"{source}: nothing to embed (no media files)")
    units = []
    for n, s in enumerate(range(0, len(rows), shard_size)):
        chunk = rows[s : s + shard_size]
        units.append(Unit(n, kind, f"{os.path.basename(source)} items {s}-{s + len(chunk) - 1}", rows=tuple(chunk)))
    return kind, units


def _walk_folder(root: str) -> list:
    from ..index.walker import Found, walk_media

    rows = []
    for ent in walk_media(root):
        # a folder entry that cannot be walked (broken link, unreadable folder) is listed as (path, reason)
        rows.append(ent.path if isinstance(ent, Found) else (ent.path, ent.reason))
    return sorted(rows, key=lambda r: r if isinstance(r, str) else r[0])


def plan_digest(kind: str, units: list[Unit]) -> str:
    h = hashlib.sha256(kind.encode())
    for u in units:
        h.update(json.dumps(u.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def iter_records(unit: Unit) -> Iterator[Record]:
    """The inputs of ``unit``, in order. A tar / parquet shard that breaks raises ConfigError naming it."""
    from ..media.image import load_image, load_image_bytes

    if unit.kind == "folder":
        for r in unit.rows:
            if not isinstance(r, str):  # (path, reason): the walk could not read it
                yield Record(r[0], None, {}, error=r[1])
            elif media_type_of(r) == "video":
                yield Record(r, (lambda p=r: p), {}, media="video")
            else:
                yield Record(r, (lambda p=r: load_image(p)), {})
    elif unit.kind == "manifest":
        for path, caption, key in unit.rows:
            meta = {"caption": caption, **({"key": key} if key is not None else {})}
            if media_type_of(path) == "video":
                yield Record(path, (lambda p=path: p), meta, media="video")
            else:
                yield Record(path, (lambda p=path: load_image(p)), meta)
    elif unit.kind == "wds":
        from ..data.webdataset import iter_tar_samples

        for s in iter_tar_samples(unit.shard):
            img, vid = s.image, s.video
            name = f"{unit.shard}#{s.key}.{img[0] if img else 'jpg'}"
            meta = {"key": s.key, "caption": s.caption,
                    **{k: v for k, v in s.meta.items() if k not in ("key", "caption") and _scalar(v)}}
            if vid is not None:  # a video sample (video2dataset); a thumbnail beside it is not the item
                name = f"{unit.shard}#{s.key}.{vid[0]}"
                yield Record(name, (lambda v=vid: v), meta, media="video")
            elif img is None:
                yield Record(name, None, meta, error=f"no image or video member ({', '.join(sorted(s.files))} only)")
            else:
                yield Record(name, (lambda d=img[1], nm=name: load_image_bytes(d, nm)), meta)
    elif unit.kind == "parquet":
        from ..data.parquet import iter_parquet_rows

        for r in iter_parquet_rows(unit.shard):
            meta = {"key": r.key, "caption": r.caption, **r.meta}
            if r.path is not None:
                yield Record(r.path, (lambda p=r.path: load_image(p)), meta, error=r.error)
            else:
                name = f"{unit.shard}#{r.key}"
                yield Record(name, (lambda d=r.data, nm=name: load_image_bytes(d, nm)), meta, error=r.error)
    else:
        raise ConfigError(f"unknown unit kind {unit.kind!r}")


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


__all__ = ["KINDS", "Unit", "Record", "detect_kind", "plan_units", "plan_digest", "iter_records"]
