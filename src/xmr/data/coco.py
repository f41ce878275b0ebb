"""``coco:DIR[:SPLIT]`` — MS-COCO caption annotations in the official layout::

    DIR/annotations/captions_train2017.json
    DIR/annotations/captions_val2017.json
    DIR/train2017/000000000009.jpg
    DIR/val2017/000000000139.jpg

Each ``annotations/captions_<split>.json`` is one split, named after the file (``val2017``); its images are
``<root>/<split>/<file_name>`` with ``root`` = ``DIR`` unless the ``root`` option says otherwise.

- Images without any caption are left out (COCO files list distractor images with no caption).
- Order: splits by name, images by image id, each image's captions by annotation id (so ``first5`` keeps the
  five lowest annotation ids, as the Karpathy/CLIP protocol does).
- Only the selected splits' files are read; they are the dataset's ``source_files``.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

from ..errors import ConfigError
from .base import DATASETS, Item, RetrievalDataset, load_json, require_file, requested_splits, take_options

_CAPTION_FILE = re.compile(r"^captions_(.+)\.json$")


def caption_files(folder: str) -> dict[str, str]:
    """split -> absolute path of ``folder/annotations/captions_<split>.json``, sorted by split."""
    folder = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(folder):
        raise ConfigError(
            f"COCO folder not found: {folder}. Expected a folder holding annotations/captions_<split>.json "
            f"and <split>/ image folders (see docs/datasets.md)"
        )
    ann = os.path.join(folder, "annotations")
    names = sorted(os.listdir(ann)) if os.path.isdir(ann) else []
    found = {m.group(1): os.path.join(ann, n) for n in names if (m := _CAPTION_FILE.match(n))}
    if not found:
        raise ConfigError(
            f"no COCO caption files in {ann}: expected annotations/captions_<split>.json, e.g. "
            f"captions_val2017.json from annotations_trainval2017.zip (see docs/datasets.md)"
        )
    return dict(sorted(found.items()))


def read_coco_captions(path: str, split: str, image_root: str) -> list[Item]:
    """Captioned images of one COCO caption file, by image id, captions by annotation id."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise ConfigError(f"{path}: not a COCO caption file (needs top-level 'images' and 'annotations' lists)")
    files: dict[int, str] = {}
    for i, im in enumerate(data["images"]):
        try:
            files[int(im["id"])] = str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name'") from None
    caps: dict[int, list[tuple[int, str]]] = {}
    for i, a in enumerate(data["annotations"]):
        try:
            image_id, ann_id, text = int(a["image_id"]), int(a["id"]), a["caption"]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: annotations[{i}] needs integer 'image_id' and 'id' and a 'caption'") from None
        if image_id not in files:
            raise ConfigError(f"{path}: annotations[{i}] (id {ann_id}) refers to image id {image_id}, not in 'images'")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{path}: annotations[{i}] (id {ann_id}) has an empty caption")
        caps.setdefault(image_id, []).append((ann_id, text.strip()))
    folder = os.path.join(image_root, split)
    return [
        Item(
            media=os.path.join(folder, files[image_id]),
            captions=tuple(t for _, t in sorted(caps[image_id])),
            split=split,
            id=str(image_id),
        )
        for image_id in sorted(caps)
    ]


@DATASETS.register("coco", help="MS-COCO caption JSONs: coco:DIR[:SPLIT] (DIR/annotations/captions_<split>.json)")
def load_coco(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("coco", options, ("root",))
    folder = os.path.abspath(os.path.expanduser(arg))
    available = caption_files(folder)
    wanted = requested_splits(split) or list(available)
    missing = [s for s in wanted if s not in available]
    if missing:
        raise ConfigError(
            f"no caption file for split {', '.join(map(repr, missing))} in {folder}/annotations. "
            f"Available splits: {', '.join(available)}"
        )
    root = os.path.abspath(os.path.expanduser(opts.get("root", folder)))
    wanted = sorted(wanted)
    sources = [require_file(available[s], "COCO caption file") for s in wanted]
    items = [it for s, p in zip(wanted, sources) for it in read_coco_captions(p, s, root)]
    if not items:
        raise ConfigError(f"{', '.join(sources)}: no captioned images")
    return RetrievalDataset.from_items(
        f"coco:{os.path.basename(folder)}" + (f"/{split}" if split else ""),
        items,
        caption_policy=caption_policy,
        source_files=sources,
    )


__all__ = ["load_coco", "read_coco_captions", "caption_files"]
