"""``manifest:PATH.jsonl`` — the generic format: one JSON object per line.

Each line::

    {"media": "images/a.jpg", "captions": ["a dog", "a brown dog"], "split": "test", "id": "a"}

- media key: ``media``, ``image``, ``video`` or ``path`` (exactly one). Relative paths resolve against the
  manifest's folder (or the ``root`` option).
- captions: ``captions`` (list of strings) or ``caption`` (one string), not both.
- optional: ``split``, ``id``, ``start`` / ``end`` (seconds, video moments). Other keys are ignored.
- lines with the same media (and the same start/end) are merged into one item, captions in line order; the
  items keep the order of their first line. Blank lines are skipped.

Errors name the file and the 1-based line number.
"""
from __future__ import annotations

import json
import os
from typing import Mapping

from ..errors import ConfigError
from .base import (
    DATASETS,
    Item,
    RetrievalDataset,
    group_rows,
    iter_jsonl,
    require_file,
    resolve_media,
    select_split,
    take_options,
)

MEDIA_KEYS = ("media", "image", "video", "path")


def _parse_line(obj: object, where: str) -> tuple[str, list[str], dict]:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    keys = [k for k in MEDIA_KEYS if k in obj]
    if len(keys) != 1:
        what = "no media key" if not keys else f"several media keys ({', '.join(keys)})"
        raise ConfigError(f"{where}: {what}; give exactly one of {', '.join(map(repr, MEDIA_KEYS))}")
    media = obj[keys[0]]
    if not isinstance(media, str) or not media.strip():
        raise ConfigError(f"{where}: {keys[0]!r} must be a non-empty path string, got {media!r}")
    if "captions" in obj and "caption" in obj:
        raise ConfigError(f"{where}: has both 'caption' and 'captions'; keep one")
    if "captions" in obj:
        caps = obj["captions"]
        if not isinstance(caps, list):
            raise ConfigError(f"{where}: 'captions' must be a list of strings (use 'caption' for one string)")
    elif "caption" in obj:
        caps = [obj["caption"]]
    else:
        raise ConfigError(f"{where}: no 'captions' (list) or 'caption' (string)")
    if not caps:
        raise ConfigError(f"{where}: 'captions' is empty; every item needs at least one caption")
    for c in caps:
        if not isinstance(c, str) or not c.strip():
            raise ConfigError(f"{where}: captions must be non-empty strings, got {c!r}")
    extra = {}
    for k in ("split", "id"):
        if obj.get(k) is not None:
            extra[k] = str(obj[k])
    for k in ("start", "end"):
        v = obj.get(k)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{where}: {k!r} must be a number of seconds, got {v!r}")
            extra[k] = float(v)
    return media.strip(), [c.strip() for c in caps], extra


def read_manifest(path: str | os.PathLike, *, root: str | None = None) -> list[Item]:
    """Items of a JSONL manifest (every line, every caption), merged as described in the module docstring."""
    path = require_file(path, "manifest file")
    base = os.path.abspath(os.path.expanduser(root)) if root else os.path.dirname(path)

    def rows():
        for where, obj in iter_jsonl(path):
            media, caps, extra = _parse_line(obj, where)
            yield where, resolve_media(media, base), caps, extra

    return group_rows(rows(), path)


@DATASETS.register("manifest", help="JSON-lines manifest: manifest:PATH.jsonl (one item or caption per line)")
def load_manifest(
    arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
) -> RetrievalDataset:
    opts = take_options("manifest", options, ("root",))
    path = require_file(arg, "manifest file")
    items = select_split(read_manifest(path, root=opts.get("root")), split, path)
    stem = os.path.splitext(os.path.basename(path))[0]
    return RetrievalDataset.from_items(
        f"manifest:{stem}" + (f"/{split}" if split else ""),
        items,
        caption_policy=caption_policy,
        spec=f"manifest:{arg}",
        source_files=[path],
    )


def write_manifest(dataset: RetrievalDataset, path: str | os.PathLike) -> str:
    """Write ``dataset`` as a JSONL manifest and return its absolute path.

    Media under the manifest's folder are written relative to it (so the folder can be moved), others
    absolute. Fields written: ``media``, ``captions``, and ``split`` / ``id`` / ``start`` / ``end`` when set.
    ``load_dataset("manifest:" + path)`` gives the same items back."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for it in dataset.items:
            media = os.path.relpath(it.media, folder).replace(os.sep, "/") if _is_under(it.media, folder) else it.media
            row: dict = {"media": media, "captions": list(it.captions)}
            for k in ("split", "id", "start", "end"):
                if getattr(it, k) is not None:
                    row[k] = getattr(it, k)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _is_under(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives on Windows
        return False


__all__ = ["load_manifest", "read_manifest", "write_manifest", "MEDIA_KEYS"]
