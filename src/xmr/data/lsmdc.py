"""``lsmdc:DIR[:SPLIT][?layout=movie|flat]`` — LSMDC 2016 (Large Scale Movie Description Challenge) text-to-video
retrieval, read as CLIP4Clip's ``dataloaders/dataloader_lsmdc_retrieval.py`` reads it::

    DIR/LSMDC16_annos_training.csv              train (101k clips)
    DIR/LSMDC16_annos_val.csv                   val
    DIR/LSMDC16_challenge_1000_publictect.csv   test: the 1,000-clip retrieval test set ("publictect" is the
                                                file's real spelling)
    DIR/videos/0001_American_Beauty/0001_American_Beauty_00.00.51.926-00.00.54.129.avi

Each file is tab-separated without a header (despite the ``.csv`` name; commas inside sentences are text):
``clip id, start (aligned), end (aligned), start (extracted), end (extracted), sentence``; each line is
stripped before splitting, as CLIP4Clip does. Clips are already cut, so items carry no ``start`` / ``end``.

Video paths (CLIP4Clip walks the video folder and matches any file whose name without extension is the clip
id, so both layouts of the mirrors work there):

- ``layout=movie`` (default): ``<root>/<movie>/<clip id>.<ext>``, ``<movie>`` being the clip id up to its last
  ``_`` (the layout of the LSMDC download);
- ``layout=flat``: ``<root>/<clip id>.<ext>``.

``root`` defaults to ``DIR/videos``, ``ext`` to ``avi``. Rows with the same clip id merge into one item
(captions in row order; CLIP4Clip keeps one (clip, sentence) pair per row, the same pairs); items keep the
order of each clip's first row. The 1,000-row test file has one row per clip. Without a split every file that
exists is read.
"""
from __future__ import annotations

import os
from typing import Mapping

from ..errors import ConfigError
from ._video_common import choose, dataset_folder, read_lines, split_dataset, text, video_ext, video_root
from .base import DATASETS, RetrievalDataset, group_rows, take_options

SPLIT_FILES = {
    "train": "LSMDC16_annos_training.csv",
    "val": "LSMDC16_annos_val.csv",
    "test": "LSMDC16_challenge_1000_publictect.csv",
}


LAYOUTS = ("movie", "flat")


def clip_media(root: str, clip_id: str, ext: str, layout: str = "movie") -> str:
    if layout == "flat":
        return os.path.join(root, f"{clip_id}.{ext}")
    movie = clip_id.rsplit("_", 1)[0]
    return os.path.join(root, movie, f"{clip_id}.{ext}")


def read_lsmdc(path: str, split: str, root: str, ext: str = "avi", layout: str = "movie"):
    def rows():
        for n, line in enumerate(read_lines(path), 1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            cols = line.strip().split("\t")
            if len(cols) < 6 or not cols[0].strip():
                raise ConfigError(
                    f"{where}: expected 6 tab-separated columns (clip id, 4 times, sentence), got {len(cols)}"
                )
            clip = cols[0].strip()
            sentence = text(" ".join(cols[5:]), where)
            yield where, clip_media(root, clip, ext, layout), [sentence], {"split": split, "id": clip}

    return group_rows(rows(), path)


@DATASETS.register(
    "lsmdc", help="LSMDC 2016: lsmdc:DIR[:train|val|test][?layout=movie|flat] (tab-separated LSMDC16_*.csv files)"
)
def load_lsmdc(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("lsmdc", options, ("root", "ext", "layout"))
    layout = choose(opts, "layout", LAYOUTS, "lsmdc")
    folder = dataset_folder(arg, "LSMDC")
    root, ext = video_root(opts, os.path.join(folder, "videos")), video_ext(opts, "avi")
    return split_dataset(
        "lsmdc", folder, SPLIT_FILES, split, "LSMDC", caption_policy,
        read=lambda path, s: read_lsmdc(path, s, root, ext, layout),
    )


__all__ = ["load_lsmdc", "read_lsmdc", "clip_media"]
