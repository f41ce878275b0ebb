"""``didemo:DIR[:SPLIT][?mode=paragraph|moments]`` — DiDeMo (Localizing Moments in Video with Natural Language),
read as CLIP4Clip's ``dataloaders/dataloader_didemo_retrieval.py`` reads it::

    DIR/train_data.json  val_data.json  test_data.json      (LocalizingMoments' annotation files)
        [{"video": "10015567@N08_3655084291_d8b58466fa.mov", "description": "a girl sits down",
          "times": [[0, 0], [0, 1], [0, 0], [0, 0]], "annotation_id": 1, ...}, ...]
    DIR/train_list.txt  val_list.txt  test_list.txt         (optional; collaborative-experts' split lists, one
                                                            video file name per line, as CLIP4Clip expects)
    DIR/videos/10015567@N08_3655084291_d8b58466fa.mov       (``root`` names another folder; ``ext`` replaces the
                                                            extension, e.g. ext=mp4 after re-encoding)

When ``<split>_list.txt`` exists, only the videos it names are read (CLIP4Clip keeps the videos in both the
list and the JSON: the public test list has 1,004 of the 1,037 test videos whose files could be fetched);
a list entry matches a ``video`` exactly or without its extension. Without a list every video of the JSON is
read (a deliberate, documented difference for users who only have the JSON files).

``times`` holds each annotator's ``[first, last]`` 5-second segment index; like CLIP4Clip, a description's
moment is ``start = 5 * mean(first)``, ``end = 5 * (mean(last) + 1)`` seconds.

- ``mode=paragraph`` (default, the video-retrieval protocol of CLIP4Clip and later work): one item per video,
  whose single caption is all its descriptions, stripped, joined by single spaces **in file order** (as
  CLIP4Clip joins them; not re-sorted by time), no ``start`` / ``end`` (CLIP4Clip reads 0 to 31 s, i.e. the
  whole video: DiDeMo videos were cut at 30 s for annotation). Items in order of each video's first
  description in the JSON.
- ``mode=moments``: one item per description, with ``start`` / ``end`` set, in file order.

Splits ``train`` / ``val`` / ``test`` are the three JSON files (without a split: every file that exists).
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
    read_id_list,
    seconds,
    split_dataset,
    text,
    video_ext,
    video_root,
)
from .base import DATASETS, Item, RetrievalDataset, take_options

SPLIT_FILES = {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json"}
LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
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


def _listed(list_path: str | None) -> set[str] | None:
    if list_path is None:
        return None
    return set(read_id_list(list_path, "DiDeMo video"))


def read_didemo(
    path: str, split: str, root: str, mode: str, ext: str | None = None, list_path: str | None = None
) -> list[Item]:
    """Items of one ``*_data.json``; ``list_path`` (a ``*_list.txt``) keeps only the videos it names."""
    data = load_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {{video, description, times}} entries (DiDeMo *_data.json)")
    keep = _listed(list_path)
    by_video: dict[str, list[str]] = {}
    items = []
    for i, e in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("video"), str) or not e["video"].strip():
            raise ConfigError(f"{where}: needs a 'video' file name")
        start, end = _moment(e.get("times"), where)
        caption = text(e.get("description"), where)
        video = e["video"].strip()
        if keep is not None and video not in keep and os.path.splitext(video)[0] not in keep:
            continue
        if mode == "moments":
            item_id = e.get("annotation_id", f"{video}#{i}")
            items.append(Item(_media(root, video, ext), (caption,), split=split, id=item_id, start=start, end=end))
        else:
            by_video.setdefault(video, []).append(caption)
    if mode == "paragraph":
        items = [Item(_media(root, v, ext), (paragraph(s),), split=split, id=v) for v, s in by_video.items()]
    if not items:
        if keep is not None:
            raise ConfigError(f"{path}: no entry for the videos listed in {list_path}")
        raise ConfigError(f"{path}: no entries")
    return items


def _list_file(folder: str, split: str) -> str | None:
    path = os.path.join(folder, LIST_FILES[split])
    return path if os.path.isfile(path) else None


@DATASETS.register("didemo", help="DiDeMo: didemo:DIR[:train|val|test][?mode=paragraph|moments]")
def load_didemo(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("didemo", options, ("root", "ext", "mode"))
    mode = choose(opts, "mode", MODES, "didemo")
    ext = video_ext(opts, "") if "ext" in opts else None  # None: keep the extension named in the JSON
    folder = dataset_folder(arg, "DiDeMo")
    root = video_root(opts, os.path.join(folder, "videos"))
    return split_dataset(
        "didemo", folder, SPLIT_FILES, split, "DiDeMo", caption_policy,
        read=lambda path, s: read_didemo(path, s, root, mode, ext, _list_file(folder, s)), suffix=f"/{mode}",
    )


__all__ = ["load_didemo", "read_didemo", "SEGMENT_SECONDS", "LIST_FILES"]
