"""``msvd:DIR[:SPLIT]`` — MSVD (Microsoft Video Description corpus, YouTube clips) with the usual
1,200 / 100 / 670 split (collaborative-experts / CLIP4Clip ``msvd_data.zip``), read as CLIP4Clip's
``dataloaders/dataloader_msvd_retrieval.py`` reads it::

    DIR/train_list.txt  val_list.txt  test_list.txt    one video id per line, e.g. -4wsuPCjDBc_5_15
    DIR/raw-captions.pkl   or   DIR/raw-captions.json   or   DIR/AllVideoDescriptions.txt
    DIR/YouTubeClips/-4wsuPCjDBc_5_15.avi               (``root`` / ``ext`` options change folder / extension)

Captions come from the first of these that exists:

- ``raw-captions.json``: ``{"VIDEO_ID": ["a man is ...", ...]}`` (each caption a string or a list of tokens),
  the pickle converted to JSON;
- ``raw-captions.pkl``: the file CLIP4Clip reads (``{video id: [[token, ...], ...]}``; each caption's tokens
  joined by single spaces, as CLIP4Clip joins them), read with :func:`safe_load_caption_pickle`, which refuses
  any pickle that would import or call anything but a plain ``dict`` / ``OrderedDict`` / ``defaultdict(list)``
  (only containers and strings survive);
- ``AllVideoDescriptions.txt``: the corpus' own text release, ``VIDEO_ID caption words`` per line, ``#`` lines
  are comments. It is a fallback only: it is not the file the reference loaders read, and its captions are
  untokenized (punctuation attached), so it gives the same videos but not byte-identical caption strings.

Splits ``train`` / ``val`` / ``test`` are the ``*_list.txt`` files (without a split: every list that exists),
items in list order, each with **all** its captions in file order (about 40 per video: MSVD is evaluated with
several captions per video; pick the i2t rule with the evaluation protocol).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
from typing import Mapping

from ..errors import ConfigError
from ._video_common import dataset_folder, load_json, read_lines, split_files, video_ext, video_root
from .base import DATASETS, Item, RetrievalDataset, take_options

SPLIT_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
CAPTION_FILES = ("raw-captions.json", "raw-captions.pkl", "AllVideoDescriptions.txt")
# the only globals a caption pickle may name: containers a pickler writes for a dict of lists (defaultdict(list)
# needs ``list`` as its factory). Calling any of them with pickled arguments runs no code from the file.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "list"): list,
    ("__builtin__", "list"): list,
}


class _CaptionUnpickler(pickle.Unpickler):
    """Builds only what pickle opcodes make without imports (dict, list, tuple, str, numbers) plus the
    containers of :data:`_ALLOWED_GLOBALS`: any other global lookup, hence any other constructor or function
    call (``__reduce__``), is refused."""

    def find_class(self, module: str, name: str):  # noqa: D401
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return allowed

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id")


def safe_load_caption_pickle(path: str) -> dict[str, list[str]]:
    """``{video_id: [caption, ...]}`` from a CLIP4Clip ``raw-captions.pkl`` without running any code from it.

    Token lists are joined with single spaces. A pickle holding anything but that shape is a ConfigError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = _CaptionUnpickler(io.BytesIO(raw), encoding="utf-8").load()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a refusal
        raise ConfigError(
            f"{path}: refused: not a plain caption pickle ({type(e).__name__}: {e}). Only a dict of video id -> "
            f"list of captions is accepted; convert it to raw-captions.json (see docs/datasets.md)"
        ) from None
    return _caption_dict(data, path)


def _caption_dict(data: object, path: str) -> dict[str, list[str]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a dict of video id -> list of captions, got {type(data).__name__}")
    out: dict[str, list[str]] = {}
    for vid, caps in data.items():
        if not isinstance(vid, str) or not isinstance(caps, (list, tuple)):
            raise ConfigError(f"{path}: entry {vid!r:.60} must map a video id string to a list of captions")
        texts = []
        for c in caps:
            if isinstance(c, (list, tuple)) and all(isinstance(t, str) for t in c):
                c = " ".join(c)
            if not isinstance(c, str) or not c.strip():
                raise ConfigError(f"{path}: video {vid!r} has a caption that is not a non-empty string: {c!r:.60}")
            texts.append(c.strip())
        out[vid] = texts
    return out


def read_all_video_descriptions(path: str) -> dict[str, list[str]]:
    """``AllVideoDescriptions.txt``: ``VIDEO_ID caption`` lines; ``#`` lines and blank lines skipped."""
    out: dict[str, list[str]] = {}
    for n, line in enumerate(read_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vid, _, caption = line.partition(" ")
        if not caption.strip():
            raise ConfigError(f"{path}, line {n}: expected 'VIDEO_ID caption', got {line!r:.80}")
        out.setdefault(vid, []).append(caption.strip())
    if not out:
        raise ConfigError(f"{path}: no captions")
    return out


def read_msvd_captions(folder: str) -> tuple[dict[str, list[str]], str]:
    """(captions by video id, file read): the first of :data:`CAPTION_FILES` in ``folder``."""
    for name in CAPTION_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".json"):
            return _caption_dict(load_json(path), path), path
        if name.endswith(".txt"):
            return read_all_video_descriptions(path), path
        return safe_load_caption_pickle(path), path
    raise ConfigError(
        f"no MSVD caption file in {folder}: expected one of {', '.join(os.path.join(folder, n) for n in CAPTION_FILES)}"
    )


@DATASETS.register("msvd", help="MSVD: msvd:DIR[:train|val|test] (*_list.txt + raw-captions.json / .txt / .pkl)")
def load_msvd(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("msvd", options, ("root", "ext"))
    folder = dataset_folder(arg, "MSVD")
    root, ext = video_root(opts, os.path.join(folder, "YouTubeClips")), video_ext(opts, "avi")
    lists = split_files(folder, SPLIT_FILES, split, "MSVD")
    captions, caption_file = read_msvd_captions(folder)
    items = []
    for name, list_path in lists:
        for n, line in enumerate(read_lines(list_path), 1):
            vid = line.strip()
            if not vid:
                continue
            if vid not in captions:
                raise ConfigError(f"{list_path}, line {n}: video {vid!r} has no caption in {caption_file}")
            items.append(Item(os.path.join(root, f"{vid}.{ext}"), tuple(captions[vid]), split=name, id=vid))
    if not items:
        raise ConfigError(f"{', '.join(p for _, p in lists)}: no video ids")
    return RetrievalDataset.from_items(
        "msvd" + (f":{split}" if split else ""),
        items,
        caption_policy=caption_policy,
        source_files=[p for _, p in lists] + [caption_file],
    )


__all__ = ["load_msvd", "read_msvd_captions", "read_all_video_descriptions", "safe_load_caption_pickle"]
