"""Video datasets whose text is side information: live comments, ASR captions, sound labels.

``livebot:DIR[:train|dev|test]`` — LiveBot (Ma et al., AAAI 2019) processed files::

    DIR/train.json (dev.json, test.json)   JSON lines {"video": 12, "time": 34, "comment": "word segmented text"}
    DIR/img/<video>/<time>.bmp            the frame shown at second <time> (as the release extracts them)

Item: one (video, second) frame with the comments posted at that second as its captions (the jieba tokens joined
back without spaces, as the raw comments were before segmentation). Side text: a frame's ``comments`` are the
comments of the same video within 3 seconds of it (LiveBot's context window), itself included.

``howto100m:FILE[?root=VIDEOS&ext=mp4]`` — HowTo100M's ``caption.json`` (YouCook2 ASR captions in the same
layout)::

    {"<video id>": {"start": [0.0, 4.2, ...], "end": [4.2, 7.9, ...], "text": ["so today we ...", ...]}, ...}

Item: one ASR segment (``ROOT/<video id>.<ext>`` with its start / end) captioned by its text; empty texts are left
out. Side text: a video's ``asr`` rows with their times (the sidecar expert stores them timed, so a hit is a moment).

``vggsound:FILE[:train|test][?root=VIDEOS&ext=mp4]`` — VGGSound's ``vggsound.csv`` (no header;
``youtube id, start seconds, label, split``). Item: the 10-second clip ``ROOT/<youtube id>_<start, 6 digits>.<ext>``
(the naming of the common download scripts), caption = its label. Side text: ``label``.
"""
from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from typing import Mapping

from ..errors import ConfigError
from ._video_common import dataset_folder, load_json, read_lines, seconds, split_files, video_ext
from .base import DATASETS, Item, RetrievalDataset, select_split, take_options
from .side_text import register_side_text

LIVEBOT_FILES = {s: f"{s}.json" for s in ("train", "dev", "test")}
LIVEBOT_CONTEXT = 3  # seconds either side whose comments are a frame's side text


def _comment(s: object, where: str) -> str:
    if not isinstance(s, str) or not s.strip():
        raise ConfigError(f"{where}: 'comment' must be a non-empty string")
    return "".join(s.split())


def read_livebot(folder: str, split: str | None) -> tuple[list[tuple[Item, dict]], list[str]]:
    chosen = split_files(folder, LIVEBOT_FILES, split, "LiveBot")
    moments: dict[tuple, list[str]] = {}
    for s, path in chosen:
        for n, line in enumerate(read_lines(path), 1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("video"), int) or not isinstance(obj.get("time"), int):
                raise ConfigError(f"{where}: expected {{\"video\": int, \"time\": int, \"comment\": str}}")
            comments = obj.get("comment")
            comments = comments if isinstance(comments, list) else [comments]  # *-context.json hold lists
            key = (s, obj["video"], obj["time"])
            moments.setdefault(key, []).extend(_comment(c, where) for c in comments)
    out = []
    for (s, vid, t), comments in moments.items():
        media = os.path.join(folder, "img", str(vid), f"{t}.bmp")
        near = [c for dt in range(-LIVEBOT_CONTEXT, LIVEBOT_CONTEXT + 1) for c in moments.get((s, vid, t + dt), [])]
        caps = tuple(dict.fromkeys(comments))
        out.append((Item(media, caps, split=s, id=f"{vid}_{t}"), {"media": media, "comments": list(dict.fromkeys(near))}))
    if not out:
        raise ConfigError(f"{folder}: no comments")
    return out, [p for _, p in chosen]


@DATASETS.register("livebot", help="LiveBot frames and live comments: livebot:DIR[:train|dev|test]")
def load_livebot(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    take_options("livebot", options, ())
    pairs, files = read_livebot(dataset_folder(arg, "LiveBot"), split)
    return RetrievalDataset.from_items("livebot" + (f":{split}" if split else ""), [it for it, _ in pairs],
                                       caption_policy=caption_policy, source_files=files)


@register_side_text("livebot")
def livebot_side_text(arg: str, options: dict) -> list[dict]:
    return [side for _, side in read_livebot(dataset_folder(arg, "LiveBot"), options.get("split"))[0]]


# ---------------------------------------------------------------------------------------------- howto100m


def _file(arg: str, what: str) -> str:
    path = os.path.abspath(os.path.expanduser(arg))
    if not os.path.isfile(path):
        raise ConfigError(f"{what} not found: {path}. See docs/datasets.md")
    return path


def read_howto100m(path: str, root: str, ext: str) -> list[tuple[Item, dict]]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {{video id: {{\"start\": [...], \"end\": [...], \"text\": [...]}}}}")
    out = []
    for vid, e in data.items():
        where = f"{path}: [{vid!r}]"
        if not isinstance(e, dict) or not all(isinstance(e.get(k), list) for k in ("start", "end", "text")):
            raise ConfigError(f"{where}: needs 'start', 'end' and 'text' lists")
        if not len(e["start"]) == len(e["end"]) == len(e["text"]):
            raise ConfigError(f"{where}: 'start', 'end' and 'text' have different lengths")
        media = os.path.join(root, f"{vid}.{ext}")
        rows = []
        for j, (a, b, t) in enumerate(zip(e["start"], e["end"], e["text"])):
            a, b = seconds(a, f"{where}.start[{j}]"), seconds(b, f"{where}.end[{j}]")
            t = " ".join(str(t).split()) if isinstance(t, str) else ""
            if not t or b <= a:
                continue
            rows.append({"start": a, "end": b, "text": t})
            out.append((Item(media, (t,), id=f"{vid}_{j}", start=a, end=b), None))
        if rows:
            out[-1] = (out[-1][0], {"media": media, "asr": rows})
    if not out:
        raise ConfigError(f"{path}: no ASR segment with text")
    return out


def _howto(arg: str, options: Mapping[str, str]):
    opts = take_options("howto100m", options, ("root", "ext"))
    path = _file(arg, "HowTo100M caption.json")
    root = os.path.abspath(os.path.expanduser(opts.get("root", os.path.join(os.path.dirname(path), "videos"))))
    return read_howto100m(path, root, video_ext(opts, "mp4")), path


@DATASETS.register("howto100m", help="HowTo100M / YouCook2 ASR captions: howto100m:caption.json[?root=&ext=]")
def load_howto100m(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
                   ) -> RetrievalDataset:
    if split is not None:
        raise ConfigError("howto100m: caption.json has no splits; drop the split")
    pairs, path = _howto(arg, options)
    return RetrievalDataset.from_items("howto100m", [it for it, _ in pairs], caption_policy=caption_policy,
                                       source_files=[path])


@register_side_text("howto100m")
def howto100m_side_text(arg: str, options: dict) -> list[dict]:
    options.pop("split", None)
    return [side for _, side in _howto(arg, options)[0] if side is not None]


# ----------------------------------------------------------------------------------------------- vggsound


def read_vggsound(path: str, root: str, ext: str) -> list[Item]:
    out = []
    for n, row in enumerate(csv.reader(read_lines(path)), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 4:
            raise ConfigError(f"{path} line {n}: expected 4 columns (youtube id, start seconds, label, split), "
                              f"got {len(row)}")
        ytid, start, label, split = (c.strip() for c in row)
        if not start.isdigit() or not ytid or not label or not split:
            raise ConfigError(f"{path} line {n}: expected youtube id, whole start seconds, label, split")
        out.append(Item(os.path.join(root, f"{ytid}_{int(start):06d}.{ext}"), (label,), split=split,
                        id=f"{ytid}_{int(start)}"))
    if not out:
        raise ConfigError(f"{path}: no rows")
    return out


def _vgg(arg: str, options: Mapping[str, str]):
    opts = take_options("vggsound", options, ("root", "ext"))
    path = _file(arg, "VGGSound vggsound.csv")
    root = os.path.abspath(os.path.expanduser(opts.get("root", os.path.join(os.path.dirname(path), "video"))))
    return read_vggsound(path, root, video_ext(opts, "mp4")), path


@DATASETS.register("vggsound", help="VGGSound clips by label: vggsound:vggsound.csv[:train|test][?root=&ext=]")
def load_vggsound(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
                  ) -> RetrievalDataset:
    items, path = _vgg(arg, options)
    return RetrievalDataset.from_items("vggsound" + (f":{split}" if split else ""), select_split(items, split, path),
                                       caption_policy=caption_policy, source_files=[path])


@register_side_text("vggsound")
def vggsound_side_text(arg: str, options: dict) -> list[dict]:
    split = options.pop("split", None)
    items = select_split(_vgg(arg, options)[0], split, arg)
    labels = defaultdict(list)
    for it in items:
        labels[it.media] += [c for c in it.captions if c not in labels[it.media]]
    return [{"media": m, "label": v} for m, v in labels.items()]


__all__ = ["read_livebot", "read_howto100m", "read_vggsound"]
