"""``activitynet:DIR[:SPLIT][?mode=paragraph|moments]`` — ActivityNet Captions::

    DIR/train.json  val_1.json  val_2.json
        {"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                           "sentences": ["A young woman is seen standing ...", " She then ..."]}, ...}
    DIR/videos/v_QOlSCBRmfWY.mp4          (``root`` names another folder, ``ext`` another extension)

Splits ``train``, ``val_1``, ``val_2`` are the files (without a split: every file that exists). Video-paragraph
retrieval papers (CLIP4Clip and later) train on ``train`` and report on ``val_1``.

- ``mode=paragraph`` (default): one item per video, its caption the video's sentences stripped and joined by
  spaces in timestamp order (by start, then end; ties keep file order); items in file order.
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
    seconds,
    split_dataset,
    text,
    video_ext,
    video_root,
)
from .base import DATASETS, Item, RetrievalDataset, take_options

SPLIT_FILES = {"train": "train.json", "val_1": "val_1.json", "val_2": "val_2.json"}
MODES = ("paragraph", "moments")


def read_activitynet(path: str, split: str, root: str, mode: str, ext: str = "mp4") -> list[Item]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of video id -> {{duration, timestamps, sentences}}")
    items = []
    for vid, entry in data.items():
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
        media = os.path.join(root, f"{vid}.{ext}")
        if mode == "paragraph":
            items.append(Item(media, (paragraph(moments),), split=split, id=vid))
            continue
        for j, (start, end, caption) in enumerate(moments):
            try:
                items.append(Item(media, (caption,), split=split, id=f"{vid}#{j}", start=start, end=end))
            except ConfigError as e:
                raise ConfigError(f"{where}, sentence {j}: {e}") from None
    if not items:
        raise ConfigError(f"{path}: no videos")
    return items


@DATASETS.register(
    "activitynet", help="ActivityNet Captions: activitynet:DIR[:train|val_1|val_2][?mode=paragraph|moments]"
)
def load_activitynet(
    arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
) -> RetrievalDataset:
    opts = take_options("activitynet", options, ("root", "ext", "mode"))
    mode = choose(opts, "mode", MODES, "activitynet")
    folder = dataset_folder(arg, "ActivityNet Captions")
    root, ext = video_root(opts, os.path.join(folder, "videos")), video_ext(opts, "mp4")
    return split_dataset(
        "activitynet", folder, SPLIT_FILES, split, "ActivityNet Captions", caption_policy,
        read=lambda path, s: read_activitynet(path, s, root, mode, ext), suffix=f"/{mode}",
    )


__all__ = ["load_activitynet", "read_activitynet"]
