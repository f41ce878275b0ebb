"""``vatex:DIR[:SPLIT][?videos=clips|full]`` — VATEX v1.0 (English captions)::

    DIR/vatex_training_v1.0.json              train (25,991 clips)
    DIR/vatex_validation_v1.0.json            val   (3,000 clips)
    DIR/vatex_public_test_english_v1.1.json   public_test (English captions of the public test set)
        [{"videoID": "Ptf_2VRj-V0_000122_000132", "enCap": ["...", ... 10 captions], "chCap": [...]}, ...]

    the retrieval split of HGR (Chen et al. 2020) that CLIP2Video and TS2-Net use (optional):
    DIR/train_list.txt  val_list.txt  test_list.txt   one videoID per line (25,991 / 1,500 / 1,500: HGR halves
                                                      the official validation set into val and test)
    DIR/test1k5_sec_list.txt                          CLIP2Video's own random 1,500-clip test list
    DIR/vatex_data.json    {"<videoID>": {"enCap": [...], ...}, ...}   (CLIP2Video), or
    DIR/ref_captions.json  {"<videoID>": ["...", ...], ...}           (TS2-Net)

A ``videoID`` is ``<YouTube id>_<start>_<end>`` (whole seconds, six digits; the YouTube id may itself hold
``_``). Items keep file order with the ten ``enCap`` captions in order (``chCap`` is ignored).

Splits ``train`` / ``val`` / ``public_test`` are the official files. Splits ``hgr-train`` / ``hgr-val`` /
``hgr-test`` / ``test1k5`` are the list files, read as CLIP2Video's ``dataloader_vatexEnglish_frame.py`` and
TS2-Net's ``dataloader_vatex_retrieval.py`` read them: items in list order, each with every English caption of
its videoID, taken from the first of ``vatex_data.json`` (``enCap``), ``ref_captions.json``, or the official
training + validation files; a listed videoID without captions is a ConfigError (both references assert it).
Retrieval papers report VATEX on ``hgr-test`` (1,500 clips x 10 captions). Without a split only the official
files that exist are read (the list splits overlap them).

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
from ._video_common import (
    annotation_file,
    choose,
    dataset_folder,
    load_json,
    read_lines,
    split_dataset,
    text,
    video_ext,
    video_root,
)
from .base import DATASETS, Item, RetrievalDataset, requested_splits, take_options

SPLIT_FILES = {
    "train": "vatex_training_v1.0.json",
    "val": "vatex_validation_v1.0.json",
    "public_test": "vatex_public_test_english_v1.1.json",
}
LIST_SPLITS = {
    "hgr-train": "train_list.txt",
    "hgr-val": "val_list.txt",
    "hgr-test": "test_list.txt",
    "test1k5": "test1k5_sec_list.txt",
}
CAPTION_FILES = ("vatex_data.json", "ref_captions.json")
VIDEO_MODES = ("clips", "full")
_ID_RE = re.compile(r"^(.+)_(\d+)_(\d+)$")


def parse_video_id(video_id: str) -> tuple[str, float, float]:
    """``"Ptf_2VRj-V0_000122_000132"`` -> ``("Ptf_2VRj-V0", 122.0, 132.0)``; ConfigError if malformed."""
    m = _ID_RE.match(video_id)
    if m is None or int(m.group(3)) <= int(m.group(2)):
        raise ConfigError(f"VATEX videoID {video_id!r} is not <youtube id>_<start>_<end> with end > start")
    return m.group(1), float(int(m.group(2))), float(int(m.group(3)))


def _item(vid: str, captions: tuple[str, ...], split: str, root: str, videos: str, ext: str, where: str) -> Item:
    try:
        ytid, start, end = parse_video_id(vid)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if videos == "clips":
        return Item(os.path.join(root, f"{vid}.{ext}"), captions, split=split, id=vid)
    return Item(os.path.join(root, f"{ytid}.{ext}"), captions, split=split, id=vid, start=start, end=end)


def _official_entries(path: str) -> list[tuple[str, tuple[str, ...], str]]:
    """``[(videoID, English captions, where)]`` of an official VATEX JSON, in file order."""
    data = load_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {{videoID, enCap}} entries (VATEX json)")
    out = []
    for i, e in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("videoID"), str):
            raise ConfigError(f"{where}: needs a 'videoID' string")
        vid = e["videoID"].strip()
        caps = e.get("enCap")
        if not isinstance(caps, list) or not caps:
            raise ConfigError(f"{where} ({vid}): needs a non-empty 'enCap' list of English captions")
        out.append((vid, tuple(text(c, f"{where} ({vid})") for c in caps), where))
    return out


def read_vatex(path: str, split: str, root: str, videos: str = "clips", ext: str = "mp4") -> list[Item]:
    items = [_item(vid, caps, split, root, videos, ext, where) for vid, caps, where in _official_entries(path)]
    if not items:
        raise ConfigError(f"{path}: no entries")
    return items


def read_caption_map(folder: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """(videoID -> English captions, files read) for the list splits: ``vatex_data.json`` (values
    ``{"enCap": [...]}``), else ``ref_captions.json`` (values ``[...]``), else the official training and
    validation files."""
    for name in CAPTION_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        data = load_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected an object of videoID -> captions")
        out = {}
        for vid, value in data.items():
            caps = value.get("enCap") if isinstance(value, dict) else value
            where = f"{path}: {vid!r}"
            if not isinstance(caps, list) or not caps:
                raise ConfigError(f"{where}: expected a non-empty list of English captions (or {{'enCap': [...]}})")
            out[vid.strip()] = tuple(text(c, where) for c in caps)
        return out, [path]
    official = [os.path.join(folder, SPLIT_FILES[s]) for s in ("train", "val")]
    official = [p for p in official if os.path.isfile(p)]
    if not official:
        expected = [os.path.join(folder, n) for n in CAPTION_FILES + (SPLIT_FILES["train"], SPLIT_FILES["val"])]
        raise ConfigError(f"no VATEX caption file for the list splits; expected one of: {', '.join(expected)}")
    out = {}
    for p in official:
        out.update({vid: caps for vid, caps, _ in _official_entries(p)})
    return out, official


def read_vatex_list(
    list_path: str, captions: Mapping[str, tuple[str, ...]], caption_files: list[str], split: str, root: str,
    videos: str = "clips", ext: str = "mp4",
) -> list[Item]:
    items = []
    for n, line in enumerate(read_lines(list_path), 1):
        vid = line.strip()
        if not vid:
            continue
        where = f"{list_path}, line {n}"
        if vid not in captions:
            raise ConfigError(f"{where}: videoID {vid!r} has no caption in {', '.join(caption_files)}")
        items.append(_item(vid, captions[vid], split, root, videos, ext, where))
    if not items:
        raise ConfigError(f"{list_path}: no videoIDs")
    return items


@DATASETS.register(
    "vatex", help="VATEX: vatex:DIR[:train|val|public_test|hgr-train|hgr-val|hgr-test|test1k5][?videos=clips|full]"
)
def load_vatex(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("vatex", options, ("root", "ext", "videos"))
    videos = choose(opts, "videos", VIDEO_MODES, "vatex")
    folder = dataset_folder(arg, "VATEX")
    root, ext = video_root(opts, os.path.join(folder, "videos")), video_ext(opts, "mp4")
    wanted = requested_splits(split)
    known = {**SPLIT_FILES, **LIST_SPLITS}
    unknown = [s for s in wanted or () if s not in known]
    if unknown:
        raise ConfigError(f"unknown VATEX split {', '.join(map(repr, unknown))}. Available splits: {', '.join(known)}")
    if wanted is None or all(s in SPLIT_FILES for s in wanted):
        return split_dataset(
            "vatex", folder, SPLIT_FILES, split, "VATEX", caption_policy,
            read=lambda path, s: read_vatex(path, s, root, videos, ext),
        )
    paths = [annotation_file(folder, known[s], f"VATEX {s!r} split file") for s in wanted]
    captions, caption_files = read_caption_map(folder)
    items, sources = [], []
    for s, path in zip(wanted, paths):
        if s in LIST_SPLITS:
            items += read_vatex_list(path, captions, caption_files, s, root, videos, ext)
        else:
            items += read_vatex(path, s, root, videos, ext)
        sources.append(path)
    sources += [p for p in caption_files if p not in sources]
    return RetrievalDataset.from_items(f"vatex:{split}", items, caption_policy=caption_policy, source_files=sources)


__all__ = ["load_vatex", "read_vatex", "read_vatex_list", "read_caption_map", "parse_video_id", "LIST_SPLITS"]
