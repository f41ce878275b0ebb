"""``msrvtt:DIR[:SPLIT]`` — MSR-VTT with the splits video-retrieval papers use (CLIP4Clip's ``msrvtt_data.zip``)::

    DIR/MSRVTT_data.json            {"videos": [{"video_id": "video0", "split": "train", ...}, ...],
                                     "sentences": [{"video_id": "video0", "caption": "...", "sen_id": 0}, ...]}
    DIR/MSRVTT_JSFUSION_test.csv    key,vid_key,video_id,sentence   (1,000 rows, one caption per video)
    DIR/MSRVTT_train.9k.csv         video_id                         (9,000 rows)
    DIR/MSRVTT_train.7k.csv         video_id                         (7,010 rows)
    DIR/videos/all/video0.mp4       (as CLIP4Clip's ``MSRVTT.zip`` unpacks; ``DIR/videos/video0.mp4`` when there
                                     is no ``DIR/videos/all`` folder; the ``root`` option names another video
                                     folder, ``ext`` another extension)

Splits (the item's ``split`` is the name asked for) and the files each reads:

- ``1k-A`` (default): the JSFusion 1k test set, 1,000 videos with one caption each, in CSV order
  (``MSRVTT_JSFUSION_test.csv`` only);
- ``9k`` / ``7k``: the training lists, every caption of each listed video from ``MSRVTT_data.json``
  (``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv`` + ``MSRVTT_data.json``), in list order;
- ``full``: the official test split, 2,990 videos with all 20 captions each (``MSRVTT_data.json``);
- ``full-train`` (6,513 videos) and ``full-val`` (497, ``"validate"`` in the JSON): the official splits.

Captions of one video keep the order of ``sentences`` in the JSON. Several splits join with ``+``.

Checked against CLIP4Clip's ``dataloaders/dataloader_msrvtt_retrieval.py`` and X-Pool's
``datasets/msrvtt_dataset.py``: both read ``video_id`` / ``sentence`` of the JSFusion CSV row by row (test), and
for training every ``caption`` of ``MSRVTT_data.json``'s ``sentences`` whose ``video_id`` is in the
train CSV's ``video_id`` column, with videos ``<video_id>.mp4``. The CSVs are comma-separated with a header row.

``msrvtt:FILE.jsonl`` instead reads a JSON-lines caption file with ``clip_name`` (or ``video_id``) and
``caption`` keys, one caption per line (the layout of ``shared/data/msrvtt-mini/captions_test.jsonl``); videos are
``<root>/<clip_name>.<ext>`` with ``root`` = the file's folder by default.
"""
from __future__ import annotations

import csv
import os
from typing import Mapping

from ..errors import ConfigError
from ._video_common import annotation_file, load_json, text, video_ext, video_root
from .base import DATASETS, Item, RetrievalDataset, group_rows, iter_jsonl, requested_splits, select_split, take_options

DATA_JSON = "MSRVTT_data.json"
JSFUSION_CSV = "MSRVTT_JSFUSION_test.csv"
TRAIN_LISTS = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
FULL_SPLITS = {"full": "test", "full-train": "train", "full-val": "validate"}
SPLITS = ("1k-A", "9k", "7k", "full", "full-train", "full-val")
DEFAULT_SPLIT = "1k-A"


def _read_csv(path: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise ConfigError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
            return [(reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot be read as CSV ({e})") from None


def _data_json(path: str) -> tuple[list[dict], dict[str, list[str]]]:
    """(videos entries, video_id -> captions in file order) of ``MSRVTT_data.json``."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list) or not isinstance(
        data.get("sentences"), list
    ):
        raise ConfigError(f"{path}: not MSRVTT_data.json (needs top-level 'videos' and 'sentences' lists)")
    captions: dict[str, list[str]] = {}
    for i, s in enumerate(data["sentences"]):
        if not isinstance(s, dict) or not isinstance(s.get("video_id"), str):
            raise ConfigError(f"{path}: sentences[{i}] needs a 'video_id' string")
        captions.setdefault(s["video_id"], []).append(text(s.get("caption"), f"{path}: sentences[{i}]"))
    for i, v in enumerate(data["videos"]):
        if not isinstance(v, dict) or not isinstance(v.get("video_id"), str) or "split" not in v:
            raise ConfigError(f"{path}: videos[{i}] needs 'video_id' and 'split'")
    return data["videos"], captions


def _captioned(vid: str, captions: dict[str, list[str]], where: str) -> tuple[str, ...]:
    if vid not in captions:
        raise ConfigError(f"{where}: video {vid!r} has no sentence in {DATA_JSON}")
    return tuple(captions[vid])


def read_msrvtt(folder: str, split: str, root: str, ext: str) -> tuple[list[Item], list[str]]:
    """(items of one named split, annotation files read)."""

    def media(vid: str) -> str:
        return os.path.join(root, f"{vid}.{ext}")

    if split == "1k-A":
        path = annotation_file(folder, JSFUSION_CSV, "MSR-VTT 1k-A test file")
        items = []
        for line, row in _read_csv(path, ("video_id", "sentence")):
            where = f"{path}, line {line}"
            if not row["video_id"]:
                raise ConfigError(f"{where}: empty video_id")
            items.append(Item(media(row["video_id"]), (text(row["sentence"], where),), split=split, id=row["video_id"]))
        if not items:
            raise ConfigError(f"{path}: no rows")
        return items, [path]
    if split in TRAIN_LISTS:
        list_path = annotation_file(folder, TRAIN_LISTS[split], f"MSR-VTT {split} training list")
        json_path = annotation_file(folder, DATA_JSON, "MSR-VTT annotation file")
        _, captions = _data_json(json_path)
        rows = _read_csv(list_path, ("video_id",))
        if not rows:
            raise ConfigError(f"{list_path}: no rows")
        items = [
            Item(media(r["video_id"]), _captioned(r["video_id"], captions, f"{list_path}, line {n}"), split=split,
                 id=r["video_id"])
            for n, r in rows
        ]
        return items, [list_path, json_path]
    json_path = annotation_file(folder, DATA_JSON, "MSR-VTT annotation file")
    videos, captions = _data_json(json_path)
    official = FULL_SPLITS[split]
    items = [
        Item(media(v["video_id"]), _captioned(v["video_id"], captions, f"{json_path}: videos[{i}]"), split=split,
             id=v["video_id"])
        for i, v in enumerate(videos)
        if v["split"] == official
    ]
    if not items:
        raise ConfigError(f"{json_path}: no video with split {official!r}")
    return items, [json_path]


def read_caption_jsonl(path: str, root: str, ext: str) -> list[Item]:
    """Items of a JSON-lines file with ``clip_name`` (or ``video_id``) and ``caption`` per line."""

    def rows():
        for where, obj in iter_jsonl(path):
            vid = obj.get("clip_name", obj.get("video_id")) if isinstance(obj, dict) else None
            if not isinstance(vid, str) or not vid.strip():
                raise ConfigError(f"{where}: needs a 'clip_name' (or 'video_id') string")
            vid = vid.strip()
            yield where, os.path.join(root, f"{vid}.{ext}"), [text(obj.get("caption"), where)], {"id": vid}

    return group_rows(rows(), path)


@DATASETS.register(
    "msrvtt", help="MSR-VTT: msrvtt:DIR[:1k-A|9k|7k|full|full-train|full-val] or msrvtt:captions.jsonl"
)
def load_msrvtt(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("msrvtt", options, ("root", "ext"))
    ext = video_ext(opts, "mp4")
    path = os.path.abspath(os.path.expanduser(arg))
    if os.path.isfile(path):
        items = select_split(read_caption_jsonl(path, video_root(opts, os.path.dirname(path)), ext), split, path)
        stem = os.path.splitext(os.path.basename(path))[0]
        return RetrievalDataset.from_items(f"msrvtt:{stem}", items, caption_policy=caption_policy, source_files=[path])
    if not os.path.isdir(path):
        raise ConfigError(
            f"MSR-VTT folder not found: {path}. Expected a folder with {DATA_JSON} and {JSFUSION_CSV} "
            f"(or a captions .jsonl file); see docs/datasets.md"
        )
    wanted = requested_splits(split) or [DEFAULT_SPLIT]
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown:
        raise ConfigError(
            f"unknown MSR-VTT split {', '.join(map(repr, unknown))}. Available splits: {', '.join(SPLITS)}"
        )
    videos = os.path.join(path, "videos")
    root = video_root(opts, os.path.join(videos, "all") if os.path.isdir(os.path.join(videos, "all")) else videos)
    items, sources = [], []
    for s in wanted:
        its, files = read_msrvtt(path, s, root, ext)
        items += its
        sources += [f for f in files if f not in sources]
    return RetrievalDataset.from_items(
        f"msrvtt:{'+'.join(wanted)}", items, caption_policy=caption_policy, source_files=sources
    )


__all__ = ["load_msrvtt", "read_msrvtt", "read_caption_jsonl", "SPLITS"]
