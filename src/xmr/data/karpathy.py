"""``karpathy:PATH/dataset_coco.json[:SPLIT]`` — Karpathy & Fei-Fei split files (``dataset_coco.json``,
``dataset_flickr30k.json``, ``dataset_flickr8k.json``)::

    {"dataset": "coco",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "split": "test",
                 "cocoid": 391895, "imgid": 0, "sentences": [{"raw": "A man ...", "tokens": [...]}, ...]}, ...]}

Splits are ``train``, ``val``, ``test`` and ``restval`` (COCO only; usually trained on with ``train+restval``).

Image paths, with ``root`` = the ``root`` option, or the JSON's folder:

- entries with ``filepath`` (COCO): ``<root>/<filepath>/<filename>``, e.g. ``<root>/val2014/COCO_val2014_...jpg``;
- entries without (Flickr): ``<root>/<images folder>/<filename>`` where the images folder is the first of
  ``flickr30k-images`` (Flickr30K), ``Flicker8k_Dataset`` / ``Flickr8k_Dataset`` (Flickr8K) and ``images``
  that exists under ``root``; if none exists, ``<root>/<filename>``.

Order: the file's order (the order the published splits are always evaluated in); captions in ``sentences``
order, each ``raw`` (or the ``tokens`` joined by spaces when ``raw`` is missing), stripped of surrounding space.
Item ids are ``cocoid`` when present, else ``imgid``.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

from ..errors import ConfigError
from .base import DATASETS, Item, RetrievalDataset, load_json, require_file, select_split, take_options

#: candidate image folders under the root, tried in order, for entries without ``filepath``
IMAGE_FOLDERS = ("flickr30k-images", "Flicker8k_Dataset", "Flickr8k_Dataset", "images")


def _image_folder(root: str) -> str:
    for name in IMAGE_FOLDERS:
        d = os.path.join(root, name)
        if os.path.isdir(d):
            return d
    return root


def _sentence(s: object, where: str) -> str:
    if isinstance(s, dict):
        raw = s.get("raw")
        if raw is None and isinstance(s.get("tokens"), list):
            raw = " ".join(map(str, s["tokens"]))
        if isinstance(raw, str) and raw.strip():
            return raw.strip()
    raise ConfigError(f"{where}: a sentence needs a non-empty 'raw' string (or 'tokens'), got {s!r:.80}")


def read_karpathy(path: str, *, root: str | None = None) -> tuple[str, list[Item]]:
    """(dataset name, every item of the file in file order)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(
            f"{path}: not a Karpathy split file (needs a top-level 'images' list, as in dataset_coco.json)"
        )
    m = re.match(r"^dataset_(.+)\.json$", os.path.basename(path))
    name = str(data.get("dataset") or (m.group(1) if m else "karpathy"))
    root = os.path.abspath(os.path.expanduser(root)) if root else os.path.dirname(path)
    flat_folder: str | None = None  # looked up once, only if some entry has no filepath
    items = []
    for i, im in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(im, dict) or not isinstance(im.get("filename"), str) or not im["filename"]:
            raise ConfigError(f"{where} needs a 'filename'")
        sentences = im.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise ConfigError(f"{where} ({im['filename']}) has no 'sentences'")
        if im.get("filepath"):
            media = os.path.join(root, str(im["filepath"]), im["filename"])
        else:
            flat_folder = flat_folder or _image_folder(root)
            media = os.path.join(flat_folder, im["filename"])
        item_id = im.get("cocoid", im.get("imgid"))
        items.append(
            Item(
                media=media,
                captions=tuple(_sentence(s, where) for s in sentences),
                split=str(im["split"]) if im.get("split") is not None else None,
                id=None if item_id is None else str(item_id),
            )
        )
    if not items:
        raise ConfigError(f"{path}: 'images' is empty")
    return name, items


@DATASETS.register(
    "karpathy", help="Karpathy split JSON (COCO / Flickr30K / Flickr8K): karpathy:dataset_coco.json[:SPLIT]"
)
def load_karpathy(
    arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
) -> RetrievalDataset:
    opts = take_options("karpathy", options, ("root",))
    path = require_file(arg, "Karpathy split file")
    name, items = read_karpathy(path, root=opts.get("root"))
    return RetrievalDataset.from_items(
        f"karpathy:{name}" + (f"/{split}" if split else ""),
        select_split(items, split, path),
        caption_policy=caption_policy,
        source_files=[path],
    )


__all__ = ["load_karpathy", "read_karpathy", "IMAGE_FOLDERS"]
