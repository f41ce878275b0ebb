"""``cub:DIR[:SPLIT]`` — Caltech-UCSD Birds 200-2011 with the ten captions per image of Reed et al. (CVPR 2016,
"Learning Deep Representations of Fine-Grained Visual Descriptions"), in the layout their release unpacks to::

    DIR/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg   (CUB_200_2011/images)
    DIR/text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.txt  (one caption per line)
    DIR/trainvalclasses.txt, DIR/testclasses.txt, [trainclasses.txt, valclasses.txt]  (class folder names)

- Items: every ``text_c10/<class>/<name>.txt`` with at least one non-empty line; its image is
  ``<images>/<class>/<name>.jpg`` (``images`` = ``DIR/images``, else ``DIR/CUB_200_2011/images``, or the ``root``
  option). Captions in file order; blank lines skipped.
- Splits are Reed et al.'s class-disjoint (zero-shot) splits: split ``S`` is the classes listed in
  ``DIR/<S>classes.txt`` (``trainval`` / ``test``, or ``train`` / ``val``). No split: every class. A class listed in
  a split file but without a ``text_c10`` folder is an error (a partly unpacked release).
- Order: classes by folder name (``001.`` ... ``200.``), images by file name.
"""
from __future__ import annotations

import os
from typing import Mapping

from ..errors import ConfigError
from .base import DATASETS, Item, RetrievalDataset, requested_splits, take_options

_SUFFIX = "classes.txt"


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [ln.strip() for ln in f]
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None


def class_splits(folder: str) -> dict[str, str]:
    """split name -> path of ``folder/<split>classes.txt``."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(_SUFFIX) and n != _SUFFIX)
    return {n[: -len(_SUFFIX)]: os.path.join(folder, n) for n in names}


def _image_root(folder: str, root: str | None) -> str:
    if root:
        return os.path.abspath(os.path.expanduser(root))
    for cand in (os.path.join(folder, "images"), os.path.join(folder, "CUB_200_2011", "images")):
        if os.path.isdir(cand):
            return cand
    return os.path.join(folder, "images")


@DATASETS.register("cub", help="CUB-200-2011 + Reed et al. captions: cub:DIR[:trainval|test|train|val] (DIR/text_c10/)")
def load_cub(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("cub", options, ("root",))
    folder = os.path.abspath(os.path.expanduser(arg))
    text_dir = os.path.join(folder, "text_c10")
    if not os.path.isdir(text_dir):
        raise ConfigError(f"CUB captions not found: {text_dir}. Expected DIR/text_c10/<class>/<image>.txt from Reed et "
                          "al.'s cvpr2016_cub release, and DIR/images/ from CUB_200_2011 (see docs/datasets.md)")
    classes = sorted(d for d in os.listdir(text_dir) if os.path.isdir(os.path.join(text_dir, d)))
    if not classes:
        raise ConfigError(f"{text_dir}: no class folders (expected e.g. 001.Black_footed_Albatross/)")
    wanted = requested_splits(split)
    sources: list[str] = []
    split_of: dict[str, str] = {}
    if wanted:
        available = class_splits(folder)
        missing = [s for s in wanted if s not in available]
        if missing:
            raise ConfigError(f"no class list for split {', '.join(map(repr, missing))} in {folder} (expected "
                              f"<split>classes.txt). Available splits: {', '.join(available) or 'none'}")
        for s in wanted:
            sources.append(available[s])
            for c in _read_lines(available[s]):
                if c:
                    split_of.setdefault(c, s)
        absent = sorted(set(split_of) - set(classes))
        if absent:
            raise ConfigError(f"{folder}: classes {absent[:3]} of the split files have no text_c10/ folder")
        classes = [c for c in classes if c in split_of]
    images = _image_root(folder, opts.get("root"))
    items = []
    for c in classes:
        cdir = os.path.join(text_dir, c)
        for name in sorted(os.listdir(cdir)):
            if not name.endswith(".txt"):
                continue
            caps = tuple(ln for ln in _read_lines(os.path.join(cdir, name)) if ln)
            if caps:
                items.append(Item(media=os.path.join(images, c, name[:-4] + ".jpg"), captions=caps,
                                  split=split_of.get(c), id=f"{c}/{name[:-4]}"))
    if not items:
        raise ConfigError(f"{text_dir}: no captioned images" + (f" in split {split!r}" if split else ""))
    return RetrievalDataset.from_items(f"cub:{os.path.basename(folder)}" + (f"/{split}" if split else ""), items,
                                       caption_policy=caption_policy, source_files=sources)


__all__ = ["class_splits", "load_cub"]
