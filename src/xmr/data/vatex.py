"""``vatex:DIR[:SPLIT][?videos=clips|full]`` — VATEX v1.0 (English captions)::

    DIR/vatex_training_v1.0.json              train (25,991 clips)
    DIR/vatex_validation_v1.0.json            val   (3,000 clips)
    DIR/vatex_public_test_english_v1.1.json   public_test (English captions of the public test set)
        [{"videoID": "Ptf_2VRj-V0_000122_000132", "enCap": ["...", ... 10 captions], "chCap": [...]}, ...]

A ``videoID`` is ``<YouTube id>_<start>_<end>`` (whole seconds, six digits; the YouTube id may itself hold
``_``). Items keep file order with the ten ``enCap`` captions in order (``chCap`` is ignored).

- ``videos=clips`` (default): the 10-second clips were cut when downloading: ``<root>/<videoID>.<ext>``, no
  ``start`` / ``end`` on the item;
- ``videos=full``: whole YouTube videos ``<root>/<YouTube id>.<ext>`` and the clip's ``start`` / ``end`` (from
  the id) on the item.

``root`` defaults to ``DIR/videos``, ``ext`` to ``mp4``. Without a split every file that exists is read.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

from ..errors import ConfigError
from ._video_common import choose, dataset_folder, load_json, split_dataset, text, video_ext, video_root
from .base import DATASETS, Item, RetrievalDataset, take_options

SPLIT_FILES = {
    "train": "vatex_training_v1.0.json",
    "val": "vatex_validation_v1.0.json",
    "public_test": "vatex_public_test_english_v1.1.json",
}
VIDEO_MODES = ("clips", "full")
_ID_RE = re.compile(r"^(.+)_(\d+)_(\d+)$")


def parse_video_id(video_id: str) -> tuple[str, float, float]:
    """``"Ptf_2VRj-V0_000122_000132"`` -> ``("Ptf_2VRj-V0", 122.0, 132.0)``; ConfigError if malformed."""
    m = _ID_RE.match(video_id)
    if m is None or int(m.group(3)) <= int(m.group(2)):
        raise ConfigError(f"VATEX videoID {video_id!r} is not <youtube id>_<start>_<end> with end > start")
    return m.group(1), float(int(m.group(2))), float(int(m.group(3)))


def read_vatex(path: str, split: str, root: str, videos: str = "clips", ext: str = "mp4") -> list[Item]:
    data = load_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {{videoID, enCap}} entries (VATEX json)")
    items = []
    for i, e in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("videoID"), str):
            raise ConfigError(f"{where}: needs a 'videoID' string")
        vid = e["videoID"].strip()
        caps = e.get("enCap")
        if not isinstance(caps, list) or not caps:
            raise ConfigError(f"{where} ({vid}): needs a non-empty 'enCap' list of English captions")
        try:
            ytid, start, end = parse_video_id(vid)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        captions = tuple(text(c, f"{where} ({vid})") for c in caps)
        if videos == "clips":
            items.append(Item(os.path.join(root, f"{vid}.{ext}"), captions, split=split, id=vid))
        else:
            items.append(
                Item(os.path.join(root, f"{ytid}.{ext}"), captions, split=split, id=vid, start=start, end=end)
            )
    if not items:
        raise ConfigError(f"{path}: no entries")
    return items


@DATASETS.register("vatex", help="VATEX: vatex:DIR[:train|val|public_test][?videos=clips|full]")
def load_vatex(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("vatex", options, ("root", "ext", "videos"))
    videos = choose(opts, "videos", VIDEO_MODES, "vatex")
    folder = dataset_folder(arg, "VATEX")
    root, ext = video_root(opts, os.path.join(folder, "videos")), video_ext(opts, "mp4")
    return split_dataset(
        "vatex", folder, SPLIT_FILES, split, "VATEX", caption_policy,
        read=lambda path, s: read_vatex(path, s, root, videos, ext),
    )


__all__ = ["load_vatex", "read_vatex", "parse_video_id"]
