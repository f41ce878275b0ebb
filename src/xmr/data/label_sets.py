"""Label readers for two more sets of the hashing literature, from their public release layouts (see
:mod:`xmr.data.labels` for :class:`~xmr.data.labels.LabelSet` and the other readers).

* :func:`read_nuswide` - NUS-WIDE (Chua et al. 2009) as released by NUS:
  ``ImageList/Imagelist.txt`` (every image, Windows-style ``concept\\\\id_flickrid.jpg`` paths, relative to the
  ``Flickr`` image folder; ``TrainImagelist.txt`` / ``TestImagelist.txt`` for the official split),
  ``ConceptsList/Concepts81.txt`` (one concept per line) and ``Groundtruth/AllLabels/Labels_<concept>.txt``
  (one 0/1 per line, aligned with ``Imagelist.txt``; ``Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt``
  / ``_Test.txt`` aligned with the split lists); or, with ``source="tags"``, the 81 concepts as Flickr *tags*
  (``NUS_WID_Tags/AllTags81.txt``: one row of 81 0/1 values per image of ``Imagelist.txt``). ``top=21`` gives the
  hashing papers' NUS-WIDE-21: the 21 most frequent concepts, images without any of them left out (the count is
  returned).
* :func:`read_fcvid` - FCVID (Jiang et al. 2018): ``materials/FCVID_VideoName_TrainTestSplit.txt`` (``NAME
  train|test`` per line) and ``materials/FCVID_Label.txt`` (one row of 239 0/1 values per video, same order).
  The release's class-name file is optional (``classes_file``: one name per line, or ``INDEX NAME``); without it
  the classes are named by column index.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError
from .base import require_file
from .labels import LabelSet, _read_lines

NUSWIDE_SPLITS = ("all", "train", "test")


def _zero_one_column(path: str, n: int) -> np.ndarray:
    rows = _read_lines(path)
    if len(rows) != n:
        raise ConfigError(f"{path}: {len(rows)} lines, but the image list has {n}: the files do not belong together")
    out = np.zeros(n, dtype=bool)
    for i, (ln, v) in enumerate(rows):
        if v not in ("0", "1"):
            raise ConfigError(f"{path}, line {ln}: expected 0 or 1, got {v[:40]!r}")
        out[i] = v == "1"
    return out


def read_nuswide(root: str, split: str = "all", top: int | None = None, image_root: str | None = None,
                 source: str = "groundtruth") -> tuple[LabelSet, int]:
    """(labels of the NUS-WIDE images of ``split``, number of images left out for having none of the kept
    concepts). ``top``: keep the ``top`` most frequent concepts of the split (ties: concept order), as NUS-WIDE-21
    does (``top=21``); images are then kept only with at least one of them. ``image_root``: where the images are
    (default ``ROOT/Flickr``)."""
    if split not in NUSWIDE_SPLITS:
        raise ConfigError(f"NUS-WIDE split must be one of {NUSWIDE_SPLITS}, got {split!r}")
    root = os.path.abspath(os.path.expanduser(root))
    images_dir = os.path.abspath(image_root) if image_root else os.path.join(root, "Flickr")
    list_name = {"all": "Imagelist.txt", "train": "TrainImagelist.txt", "test": "TestImagelist.txt"}[split]
    list_path = require_file(os.path.join(root, "ImageList", list_name), f"NUS-WIDE {list_name}")
    names = [line for _, line in _read_lines(list_path)]
    if not names:
        raise ConfigError(f"{list_path}: no images")
    concepts = [line for _, line in _read_lines(require_file(os.path.join(root, "ConceptsList", "Concepts81.txt"),
                                                             "NUS-WIDE Concepts81.txt"))]
    if not concepts or len(set(concepts)) != len(concepts):
        raise ConfigError(f"{root}/ConceptsList/Concepts81.txt: empty or with repeated concepts")
    if source not in ("groundtruth", "tags"):
        raise ConfigError(f"NUS-WIDE source must be 'groundtruth' or 'tags', got {source!r}")
    if source == "tags":
        if split != "all":
            raise ConfigError("NUS-WIDE tags (AllTags81.txt) cover Imagelist.txt: use split 'all'")
        labels = _tag_matrix(require_file(os.path.join(root, "NUS_WID_Tags", "AllTags81.txt"),
                                          "NUS-WIDE AllTags81.txt"), len(names), len(concepts))
        return _finish(names, labels, concepts, top, images_dir)
    cols = []
    for c in concepts:
        if split == "all":
            p = os.path.join(root, "Groundtruth", "AllLabels", f"Labels_{c}.txt")
        else:
            p = os.path.join(root, "Groundtruth", "TrainTestLabels", f"Labels_{c}_{split.capitalize()}.txt")
        cols.append(_zero_one_column(require_file(p, f"NUS-WIDE labels of concept {c!r}"), len(names)))
    return _finish(names, np.stack(cols, axis=1), concepts, top, images_dir)


def _tag_matrix(path: str, n: int, width: int) -> np.ndarray:
    rows = _read_lines(path)
    if len(rows) != n:
        raise ConfigError(f"{path}: {len(rows)} rows, but the image list has {n}: the files do not belong together")
    out = np.zeros((n, width), dtype=bool)
    for i, (ln, line) in enumerate(rows):
        vals = line.split()
        if len(vals) != width or any(v not in ("0", "1") for v in vals):
            raise ConfigError(f"{path}, line {ln}: expected {width} values of 0 or 1")
        out[i] = [v == "1" for v in vals]
    return out


def _finish(names, labels, concepts, top, images_dir) -> tuple[LabelSet, int]:
    classes = tuple(concepts)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= len(concepts):
            raise ConfigError(f"top must be an integer in [1, {len(concepts)}], got {top!r}")
        keep = np.argsort(-labels.sum(0), kind="stable")[:top]
        keep.sort()
        labels, classes = labels[:, keep], tuple(concepts[j] for j in keep)
    has = labels.any(1) if top is not None else np.ones(len(names), dtype=bool)
    media = tuple(os.path.join(images_dir, *n.replace("\\", "/").split("/")) for n, h in zip(names, has) if h)
    return LabelSet(media, labels[has], classes), int((~has).sum())


def read_fcvid(root: str, split: str = "all", classes_file: str | None = None,
               video_root: str | None = None) -> LabelSet:
    """FCVID video labels (multi-hot over its 239 classes) of ``split`` ("all", "train", "test"); ``media`` are the
    video paths under ``video_root`` (default ``ROOT/videos``)."""
    if split not in ("all", "train", "test"):
        raise ConfigError(f"FCVID split must be 'all', 'train' or 'test', got {split!r}")
    root = os.path.abspath(os.path.expanduser(root))
    vroot = os.path.abspath(video_root) if video_root else os.path.join(root, "videos")
    split_path = require_file(os.path.join(root, "materials", "FCVID_VideoName_TrainTestSplit.txt"),
                              "FCVID_VideoName_TrainTestSplit.txt")
    label_path = require_file(os.path.join(root, "materials", "FCVID_Label.txt"), "FCVID_Label.txt")
    entries = []
    for n, line in _read_lines(split_path):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("train", "test"):
            raise ConfigError(f"{split_path}, line {n}: expected 'NAME train|test', got {line[:80]!r}")
        entries.append(parts)
    rows = _read_lines(label_path)
    if len(rows) != len(entries):
        raise ConfigError(f"{label_path}: {len(rows)} rows, but {split_path} lists {len(entries)} videos")
    width, mat = None, []
    for n, line in rows:
        try:
            vals = [float(v) for v in line.split()]
        except ValueError:
            raise ConfigError(f"{label_path}, line {n}: labels must be numbers") from None
        if any(v not in (0.0, 1.0) for v in vals):
            raise ConfigError(f"{label_path}, line {n}: labels must be 0 or 1")
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise ConfigError(f"{label_path}, line {n}: {len(vals)} labels, but earlier rows have {width}")
        mat.append(vals)
    labels = np.asarray(mat, dtype=bool)
    classes = tuple(str(j) for j in range(width))
    if classes_file is not None:
        cpath = require_file(classes_file, "FCVID class-name file")
        names = [line.split(maxsplit=1)[1] if line.split(maxsplit=1)[0].isdigit() and len(line.split()) > 1
                 else line for _, line in _read_lines(cpath)]
        if len(names) != width:
            raise ConfigError(f"{cpath}: {len(names)} class names, but {label_path} has {width} columns")
        classes = tuple(names)
    sel = [i for i, (_, s) in enumerate(entries) if split == "all" or s == split]
    if not sel:
        raise ConfigError(f"{split_path}: no video in split {split!r}")
    media = tuple(os.path.join(vroot, *entries[i][0].replace("\\", "/").split("/")) for i in sel)
    return LabelSet(media, labels[sel], classes)


__all__ = ["NUSWIDE_SPLITS", "read_fcvid", "read_nuswide"]
