"""Parallel caption text: ``multi30k:DIR[:SPLIT]?lang=de&root=IMAGES`` and ``xtd:DIR?lang=de&root=IMAGES``.

Multi30K task 1 (Elliott et al., 2016) as released by github.com/multi30k/dataset::

    DIR/{split}.{lang}.gz      one caption per line (gzip; a plain {split}.{lang} file is read too),
                               aligned line by line across languages (en, de, fr, cs)
    DIR/{split}.images.txt     the image file name of each line (Flickr30k / COCO)

Splits: ``train``, ``val``, ``test_2016_flickr``, ``test_2017_flickr``, ``test_2017_mscoco``, ``test_2018_flickr``
(default ``test_2016_flickr``). ``cs`` exists for train / val / test_2016_flickr / test_2018_flickr only.

XTD10 (Aggarwal & Kale, 2020), the multilingual test set of 1,000 MSCOCO images::

    DIR/test_1kcaptions_<lang>.txt   one caption per line, aligned across languages
    DIR/test_image_names.txt         the image of each line

As retrieval datasets, items are the images (lines naming the same image are grouped, in first-appearance order),
captions the lines in ``lang`` (default ``en``), media ``<root>/<image name>`` (``root`` defaults to ``DIR/images``:
the images are not part of either text release; give ``root=`` where you have them; a ``#<caption id>`` suffix of
an image name, as in Multi30K's COCO split, is dropped). :func:`read_parallel` gives
the aligned text itself (for training language acquirers and for caption-to-caption evaluation, which need no
images).
"""
from __future__ import annotations

import gzip
import os
from typing import Mapping, Sequence

from ..errors import ConfigError
from .base import DATASETS, Item, RetrievalDataset, require_file, take_options

MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
DEFAULT_SPLIT = "test_2016_flickr"


def _read_lines(path: str) -> list[str]:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable caption file ({e}); re-download it") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.strip() for ln in lines]


def _text_file(folder: str, stem: str) -> str | None:
    for name in (f"{stem}.gz", stem):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    return None


def _layout(kind: str, folder: str, split: str | None, lang: str) -> tuple[str | None, str]:
    """(caption file of ``lang`` or None, image-name file) of one split."""
    if kind == "multi30k":
        return _text_file(folder, f"{split}.{lang}"), os.path.join(folder, f"{split}.images.txt")
    return _text_file(folder, f"test_1kcaptions_{lang}.txt"), os.path.join(folder, "test_image_names.txt")


def available_languages(kind: str, folder: str, split: str | None = None) -> list[str]:
    names = os.listdir(folder) if os.path.isdir(folder) else []
    if kind == "multi30k":
        pre = f"{split or DEFAULT_SPLIT}."
        langs = {n[len(pre):].split(".")[0] for n in names if n.startswith(pre) and not n.endswith("images.txt")}
    else:
        langs = {n[len("test_1kcaptions_"):].split(".")[0] for n in names if n.startswith("test_1kcaptions_")}
    return sorted(langs)


def read_parallel(folder: str, langs: Sequence[str], split: str | None = DEFAULT_SPLIT, *,
                  kind: str = "multi30k") -> dict[str, list[str]]:
    """lang -> the split's lines, aligned (line i of every language is one caption), plus ``"images"`` -> the
    image name of each line. ConfigError for a missing language (listing the ones present), misaligned files, or an
    empty / blank line (Multi30K has none: a blank line means a damaged file)."""
    folder = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(folder):
        raise ConfigError(f"{kind} folder not found: {folder}. See docs/multilingual.md for the layout")
    if kind == "multi30k" and split not in MULTI30K_SPLITS:
        raise ConfigError(f"unknown Multi30K split {split!r}; use one of {', '.join(MULTI30K_SPLITS)}")
    out: dict[str, list[str]] = {}
    images_path = None
    for lang in langs:
        path, images_path = _layout(kind, folder, split, lang)
        if path is None:
            have = available_languages(kind, folder, split)
            raise ConfigError(f"{kind} {folder}" + (f" split {split}" if kind == "multi30k" else "")
                              + f" has no {lang!r} captions; languages present: {', '.join(have) or 'none'}")
        out[lang] = _read_lines(path)
    if images_path is None:
        _, images_path = _layout(kind, folder, split, "en")
    out["images"] = _read_lines(require_file(images_path, f"{kind} image-name file"))
    n = len(out["images"])
    for k, v in out.items():
        if len(v) != n:
            raise ConfigError(f"{kind} {folder}: {k} has {len(v)} lines but the image list has {n}; the files are "
                              "not aligned (re-download them)")
        bad = next((i for i, s in enumerate(v) if not s), None)
        if bad is not None:
            raise ConfigError(f"{kind} {folder}: {k} line {bad + 1} is empty; the file is damaged")
    return out


def _dataset(kind: str, arg: str, split: str | None, caption_policy: str, options: Mapping[str, str]):
    opts = take_options(kind, options, ("root", "lang"))
    lang = opts.get("lang", "en")
    folder = os.path.abspath(os.path.expanduser(arg))
    if kind == "multi30k":
        split = split or DEFAULT_SPLIT
    elif split not in (None, "test"):
        raise ConfigError(f"xtd has one split, 'test'; got {split!r}")
    par = read_parallel(folder, [lang], split, kind=kind)
    root = os.path.abspath(os.path.expanduser(opts.get("root") or os.path.join(folder, "images")))
    groups: dict[str, list[str]] = {}
    for name, cap in zip(par["images"], par[lang]):
        groups.setdefault(name.split("#", 1)[0], []).append(cap)  # "COCO_...jpg#657409": the caption id dropped
    items = [Item(media=os.path.join(root, name), captions=tuple(caps), split=split or "test", id=name)
             for name, caps in groups.items()]
    files = [f for f in (_layout(kind, folder, split, lang)[0],) if f] + [_layout(kind, folder, split, lang)[1]]
    return RetrievalDataset.from_items(f"{kind}:{os.path.basename(folder)}/{split or 'test'}/{lang}", items,
                                       caption_policy=caption_policy, source_files=files)


@DATASETS.register("multi30k", help="Multi30K parallel captions: multi30k:DIR[:SPLIT]?lang=de&root=IMAGES")
def load_multi30k(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    return _dataset("multi30k", arg, split, caption_policy, options)


@DATASETS.register("xtd", help="XTD10 multilingual COCO test captions: xtd:DIR?lang=de&root=IMAGES")
def load_xtd(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    return _dataset("xtd", arg, split, caption_policy, options)


__all__ = ["MULTI30K_SPLITS", "available_languages", "load_multi30k", "load_xtd", "read_parallel"]
