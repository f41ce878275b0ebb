"""``activitynet:DIR[:SPLIT][?mode=paragraph|moments][&prefix=strip|keep]`` — ActivityNet Captions, read as
CLIP4Clip's ``dataloaders/dataloader_activitynet_retrieval.py`` reads it::

    DIR/train.json  val_1.json  val_2.json
        {"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                           "sentences": ["A young woman is seen standing ...", " She then ..."]}, ...}
    DIR/train_ids.json  val_ids.json        (optional; the id lists of the captions release, ["v_...", ...])
    DIR/videos/QOlSCBRmfWY.mp4              (``root`` names another folder, ``ext`` another extension)

Splits ``train``, ``val_1``, ``val_2`` are the files (without a split: every file that exists). Video-paragraph
retrieval papers (CLIP4Clip and later) train on ``train`` and report on ``val_1`` (CLIP4Clip's ``val``).

Ids and order: when the split's id list exists (``train_ids.json`` for ``train``, ``val_ids.json`` for
``val_1`` and ``val_2``), items follow the list's order and only listed videos that have captions are kept, as
in CLIP4Clip; without it, items follow the caption file. Item ids are the JSON keys (``v_QOlSCBRmfWY``).

Video files: CLIP4Clip drops the ``v_`` of the key to find the video (``QOlSCBRmfWY.mp4``); that is the
default, ``prefix=strip``. ``prefix=keep`` uses the key as is (``v_QOlSCBRmfWY.mp4``, the name the official
ActivityNet crawler writes).

- ``mode=paragraph`` (default): one item per video, its caption the video's sentences stripped and joined by
  single spaces **in file order** (CLIP4Clip's ``" ".join(sentences)``; not re-sorted by timestamp), no
  ``start`` / ``end`` (CLIP4Clip reads 0 to ceil(duration), the whole video).
- ``mode=moments``: one item per sentence with ``start`` / ``end`` from ``timestamps`` (seconds; an end past
  ``duration`` is kept as given), in file order. A moment whose end is not after its start is a ConfigError.
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

SPLIT_FILES = {"train": "train.json", "val_1": "val_1.json", "val_2": "val_2.json"}
ID_FILES = {"train": "train_ids.json", "val_1": "val_ids.json", "val_2": "val_ids.json"}
MODES = ("paragraph", "moments")
PREFIXES = ("strip", "keep")


def video_name(key: str, prefix: str = "strip") -> str:
    """File stem of a caption key: ``v_QOlSCBRmfWY`` -> ``QOlSCBRmfWY`` (``strip``, CLIP4Clip) or unchanged."""
    return key[2:] if prefix == "strip" and key.startswith("v_") else key


def read_activitynet(
    path: str,
    split: str,
    root: str,
    mode: str,
    ext: str = "mp4",
    prefix: str = "strip",
    ids_path: str | None = None,
) -> list[Item]:
    """Items of one caption file; ``ids_path`` (a ``*_ids.json``) sets the order and keeps only its videos."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of video id -> {{duration, timestamps, sentences}}")
    keys = list(data) if ids_path is None else [k for k in read_id_list(ids_path, "ActivityNet video") if k in data]
    if not keys and ids_path is not None:
        raise ConfigError(f"{path}: none of the videos listed in {ids_path} has captions")
    items = []
    for vid in keys:
        entry = data[vid]
        where = f"{path}: {vid}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with 'timestamps' and 'sentences'")
        stamps, sentences = entry.get("timestamps"), entry.get("sentences")
        if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
            raise ConfigError(f"{where}: 'timestamps' and 'sentences' must be lists of the same length")
        if not sentences:
            raise ConfigError(f"{where}: no sentences")
        moments = []
        for j, (ts, s) in enumerate(zip(stamps, sentences)):
            w = f"{where}, sentence {j}"
            if not isinstance(ts, list) or len(ts) != 2:
                raise ConfigError(f"{w}: a timestamp must be [start, end] in seconds, got {ts!r}")
            moments.append((seconds(ts[0], w), seconds(ts[1], w), text(s, w)))
        media = os.path.join(root, f"{video_name(vid, prefix)}.{ext}")
        if mode == "paragraph":
            items.append(Item(media, (paragraph([m[2] for m in moments]),), split=split, id=vid))
            continue
        for j, (start, end, caption) in enumerate(moments):
            try:
                items.append(Item(media, (caption,), split=split, id=f"{vid}#{j}", start=start, end=end))
            except ConfigError as e:
                raise ConfigError(f"{where}, sentence {j}: {e}") from None
    if not items:
        raise ConfigError(f"{path}: no videos")
    return items


def _ids_file(folder: str, split: str) -> str | None:
    path = os.path.join(folder, ID_FILES[split])
    return path if os.path.isfile(path) else None


@DATASETS.register(
    "activitynet",
    help="ActivityNet Captions: activitynet:DIR[:train|val_1|val_2][?mode=paragraph|moments&prefix=strip|keep]",
)
def load_activitynet(
    arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
) -> RetrievalDataset:
    opts = take_options("activitynet", options, ("root", "ext", "mode", "prefix"))
    mode = choose(opts, "mode", MODES, "activitynet")
    prefix = choose(opts, "prefix", PREFIXES, "activitynet")
    folder = dataset_folder(arg, "ActivityNet Captions")
    root, ext = video_root(opts, os.path.join(folder, "videos")), video_ext(opts, "mp4")
    return split_dataset(
        "activitynet", folder, SPLIT_FILES, split, "ActivityNet Captions", caption_policy,
        read=lambda path, s: read_activitynet(path, s, root, mode, ext, prefix, _ids_file(folder, s)),
        suffix=f"/{mode}",
    )


__all__ = ["load_activitynet", "read_activitynet", "video_name"]
