"""``tvr:DIR[:train|val][?mode=moments|paragraph][&root=..&ext=..]`` — TVR (Lei et al., ECCV 2020), the release
files of jayleicn/TVRetrieval::

    DIR/tvr_train_release.jsonl  tvr_val_release.jsonl        (one description per line)
        {"vid_name": "friends_s01e03_seg02_clip_19", "duration": 61.46, "ts": [16.48, 33.87],
         "desc": "Phoebe puts one of her ponytails in her mouth.", "type": "v", "desc_id": 90200}
    DIR/videos/friends_s01e03_seg02_clip_19.mp4               (``root`` names another folder, ``ext`` another
                                                               extension; TVR ships frames and features, not
                                                               videos: put clips re-encoded from the frames here)
    DIR/features/friends_s01e03_seg02_clip_19.npy             (optional, :func:`load_tvr_features`: (clips, D)
                                                               per-video clip features, e.g. TVR's 1.5 s I3D /
                                                               ResNet features exported from its h5 files)

``tvr_test_public_release.jsonl`` hides the ground truth (no ``vid_name`` / ``ts``), so it is not a split here;
submit its predictions to the TVR server.

- ``mode=moments`` (default): one item per description, ``start`` / ``end`` from ``ts``, id = ``desc_id``, in
  file order;
- ``mode=paragraph``: one item per video, its descriptions joined in file order (video retrieval).

:func:`read_tvr_rows` returns the raw rows (what :func:`xmr.eval.vcmr` takes as ground truth).
"""
from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np

from ..errors import ConfigError
from ._video_common import choose, dataset_folder, paragraph, seconds, split_dataset, text, video_ext, video_root
from .base import DATASETS, Item, RetrievalDataset, take_options

SPLIT_FILES = {"train": "tvr_train_release.jsonl", "val": "tvr_val_release.jsonl"}
MODES = ("moments", "paragraph")


def read_tvr_rows(path: str) -> list[dict]:
    """The rows of a ``tvr_*_release.jsonl`` (blank lines skipped); ConfigError naming the line for bad JSON."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}: line {n} is not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{path}: line {n} is not a JSON object")
                rows.append(row)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not rows:
        raise ConfigError(f"{path}: no descriptions")
    return rows


def read_tvr(path: str, split: str, root: str, mode: str, ext: str = "mp4") -> list[Item]:
    items, by_video = [], {}
    for n, row in enumerate(read_tvr_rows(path), 1):
        where = f"{path}: line {n}"
        name, ts = row.get("vid_name"), row.get("ts")
        if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
            raise ConfigError(f"{where}: needs a 'vid_name' (a clip name such as friends_s01e03_seg02_clip_19)")
        if not isinstance(ts, list) or len(ts) != 2:
            raise ConfigError(f"{where}: 'ts' must be [start, end] in seconds, got {ts!r}")
        start, end = seconds(ts[0], where), seconds(ts[1], where)
        if start > end:
            raise ConfigError(f"{where}: ts start {start} is after end {end}")
        caption = text(row.get("desc"), where)
        media = os.path.join(root, f"{name}.{ext}")
        if mode == "paragraph":
            by_video.setdefault(name, (media, []))[1].append(caption)
            continue
        try:
            items.append(Item(media, (caption,), split=split, id=str(row.get("desc_id", f"{name}#{n}")),
                              start=start, end=end))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    if mode == "paragraph":
        items = [Item(m, (paragraph(caps),), split=split, id=v) for v, (m, caps) in by_video.items()]
    return items


def load_tvr_features(folder: str, names) -> dict[str, np.ndarray]:
    """``{vid_name: (clips, D) float32}`` from ``folder/<vid_name>.npy``; ConfigError naming a missing or
    malformed file (no video is silently left out)."""
    out, width = {}, None
    for name in names:
        path = os.path.join(folder, f"{name}.npy")
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ConfigError(f"TVR features: {path} not found; export one (clips, D) array per video") from None
        except (OSError, ValueError) as e:
            raise ConfigError(f"TVR features: {path} is not a numpy array file ({e})") from None
        if arr.ndim != 2 or arr.shape[0] == 0 or (width is not None and arr.shape[1] != width):
            raise ConfigError(f"TVR features: {path} has shape {arr.shape}; expected (clips, {width or 'D'})")
        if not np.isfinite(arr).all():
            raise ConfigError(f"TVR features: {path} holds NaN or infinite values")
        width = arr.shape[1]
        out[name] = arr.astype(np.float32)
    return out


@DATASETS.register("tvr", help="TVR: tvr:DIR[:train|val][?mode=moments|paragraph] (tvr_*_release.jsonl)")
def load_tvr(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("tvr", options, ("root", "ext", "mode"))
    mode = choose(opts, "mode", MODES, "tvr")
    folder = dataset_folder(arg, "TVR")
    root, ext = video_root(opts, os.path.join(folder, "videos")), video_ext(opts, "mp4")
    return split_dataset("tvr", folder, SPLIT_FILES, split, "TVR", caption_policy,
                         read=lambda path, s: read_tvr(path, s, root, mode, ext), suffix=f"/{mode}")


__all__ = ["load_tvr", "load_tvr_features", "read_tvr", "read_tvr_rows", "SPLIT_FILES"]
