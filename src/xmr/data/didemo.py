"""``didemo:DIR[:SPLIT][?mode=paragraph|moments]`` — DiDeMo (Localizing Moments in Video with Natural Language)::

    DIR/train_data.json  val_data.json  test_data.json
        [{"video": "10015567@N08_3655084291_d8b58466fa.mov", "description": "a girl sits down",
          "times": [[0, 0], [0, 1], [0, 0], [0, 0]], "annotation_id": 1, ...}, ...]
    DIR/videos/10015567@N08_3655084291_d8b58466fa.mov    (``root`` names another folder; ``ext`` replaces the
                                                          extension, e.g. ext=mp4 after re-encoding)

``times`` holds each annotator's ``[first, last]`` 5-second segment index; like CLIP4Clip, a description's
moment is ``start = 5 * mean(first)``, ``end = 5 * (mean(last) + 1)`` seconds.

- ``mode=paragraph`` (default, the video-retrieval protocol of CLIP4Clip and later work): one item per video,
  whose single caption is all its descriptions joined by spaces in moment order (by start, then end; ties keep
  file order). Items in order of each video's first description.
- ``mode=moments``: one item per description, with ``start`` / ``end`` set, in file order.

Splits ``train`` / ``val`` / ``test`` are the three files (without a split: every file that exists).
"""
from __future__ import annotations

import os
from typing import Mapping

from ..errors import ConfigError
from ._video_common import (
    choose,
    dataset_folder,
    load_json,
    paragraph,
    seconds,
    split_dataset,
    text,
    video_ext,
    video_root,
)
from .base import DATASETS, Item, RetrievalDataset, take_options

SPLIT_FILES = {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json"}
SEGMENT_SECONDS = 5.0
MODES = ("paragraph", "moments")


def _moment(times: object, where: str) -> tuple[float, float]:
    if not isinstance(times, list) or not times or not all(isinstance(t, list) and len(t) == 2 for t in times):
        raise ConfigError(f"{where}: 'times' must be a non-empty list of [first, last] segment indices")
    first = sum(seconds(t[0], where) for t in times) / len(times)
    last = sum(seconds(t[1], where) for t in times) / len(times)
    return SEGMENT_SECONDS * first, SEGMENT_SECONDS * (last + 1)


def _media(root: str, video: str, ext: str | None) -> str:
    return os.path.join(root, video if ext is None else f"{os.path.splitext(video)[0]}.{ext}")


def read_didemo(path: str, split: str, root: str, mode: str, ext: str | None = None) -> list[Item]:
    data = load_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {{video, description, times}} entries (DiDeMo *_data.json)")
    by_video: dict[str, list[tuple[float, float, str]]] = {}
    items = []
    for i, e in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("video"), str) or not e["video"].strip():
            raise ConfigError(f"{where}: needs a 'video' file name")
        start, end = _moment(e.get("times"), where)
        caption = text(e.get("description"), where)
        video = e["video"].strip()
        if mode == "moments":
            item_id = e.get("annotation_id", f"{video}#{i}")
            items.append(Item(_media(root, video, ext), (caption,), split=split, id=item_id, start=start, end=end))
        else:
            by_video.setdefault(video, []).append((start, end, caption))
    if mode == "paragraph":
        items = [Item(_media(root, v, ext), (paragraph(s),), split=split, id=v) for v, s in by_video.items()]
    if not items:
        raise ConfigError(f"{path}: no entries")
    return items


@DATASETS.register("didemo", help="DiDeMo: didemo:DIR[:train|val|test][?mode=paragraph|moments]")
def load_didemo(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("didemo", options, ("root", "ext", "mode"))
    mode = choose(opts, "mode", MODES, "didemo")
    ext = video_ext(opts, "") if "ext" in opts else None  # None: keep the extension named in the JSON
    folder = dataset_folder(arg, "DiDeMo")
    root = video_root(opts, os.path.join(folder, "videos"))
    return split_dataset(
        "didemo", folder, SPLIT_FILES, split, "DiDeMo", caption_policy,
        read=lambda path, s: read_didemo(path, s, root, mode, ext), suffix=f"/{mode}",
    )


__all__ = ["load_didemo", "read_didemo", "SEGMENT_SECONDS"]
