"""``youcook2:DIR[:SPLIT][?layout=official|flat]`` — YouCook2 clip-level retrieval (one item per annotated
recipe step)::

    DIR/youcookii_annotations_trainval.json
        {"database": {"GLd3aX16zBg": {"duration": 241.62, "subset": "training", "recipe_type": "113",
                                      "annotations": [{"segment": [90, 102], "id": 0,
                                                       "sentence": "spread margarine on two slices of bread"}, ...]},
                      ...}}
    DIR/raw_videos/training/113/GLd3aX16zBg.mp4

Splits are the ``subset`` names, ``training`` and ``validation`` (published clip retrieval reports on
``validation``; the test annotations are not public). Without a split both are loaded.

Each annotation is one item: the whole video file with ``start`` / ``end`` = its ``segment`` (seconds), one
caption (``sentence``), id ``<video id>_<annotation id>``; items in file order. Video paths:

- ``layout=official`` (default): ``<root>/<subset>/<recipe_type>/<video id>.<ext>``, as the official
  ``raw_videos`` download lays them out;
- ``layout=flat``: ``<root>/<video id>.<ext>``.

``root`` defaults to ``DIR/raw_videos``, ``ext`` to ``mp4`` (downloads mix mp4 / mkv / webm: re-encode or link).
"""
from __future__ import annotations

import os
from typing import Mapping

from ..errors import ConfigError
from ._video_common import (
    annotation_file,
    choose,
    dataset_folder,
    load_json,
    seconds,
    text,
    video_ext,
    video_root,
)
from .base import DATASETS, Item, RetrievalDataset, select_split, take_options

ANNOTATION_FILE = "youcookii_annotations_trainval.json"
LAYOUTS = ("official", "flat")


def read_youcook2(path: str, root: str, layout: str = "official", ext: str = "mp4") -> list[Item]:
    data = load_json(path)
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict):
        raise ConfigError(f"{path}: not a YouCook2 annotation file (needs a top-level 'database' object)")
    items = []
    for vid, entry in db.items():
        where = f"{path}: database[{vid!r}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("annotations"), list):
            raise ConfigError(f"{where}: needs an 'annotations' list")
        subset = entry.get("subset")
        if not isinstance(subset, str) or not subset:
            raise ConfigError(f"{where}: needs a 'subset' (training / validation)")
        if layout == "official":
            media = os.path.join(root, subset, str(entry.get("recipe_type", "")), f"{vid}.{ext}")
        else:
            media = os.path.join(root, f"{vid}.{ext}")
        for j, a in enumerate(entry["annotations"]):
            w = f"{where}, annotations[{j}]"
            seg = a.get("segment") if isinstance(a, dict) else None
            if not isinstance(seg, list) or len(seg) != 2:
                raise ConfigError(f"{w}: needs 'segment': [start, end] in seconds")
            ann_id = a.get("id", j)
            try:
                items.append(
                    Item(media, (text(a.get("sentence"), w),), split=subset, id=f"{vid}_{ann_id}",
                         start=seconds(seg[0], w), end=seconds(seg[1], w))
                )
            except ConfigError as e:
                raise ConfigError(f"{w}: {e}") from None
    if not items:
        raise ConfigError(f"{path}: no annotated segments")
    return items


@DATASETS.register("youcook2", help="YouCook2 clips: youcook2:DIR[:training|validation][?layout=official|flat]")
def load_youcook2(
    arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
) -> RetrievalDataset:
    opts = take_options("youcook2", options, ("root", "ext", "layout"))
    layout = choose(opts, "layout", LAYOUTS, "youcook2")
    folder = dataset_folder(arg, "YouCook2")
    path = annotation_file(folder, ANNOTATION_FILE, "YouCook2 annotation file")
    root, ext = video_root(opts, os.path.join(folder, "raw_videos")), video_ext(opts, "mp4")
    items = select_split(read_youcook2(path, root, layout, ext), split, path)
    return RetrievalDataset.from_items(
        "youcook2" + (f":{split}" if split else ""), items, caption_policy=caption_policy, source_files=[path]
    )


__all__ = ["load_youcook2", "read_youcook2"]
