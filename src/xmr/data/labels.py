"""Class labels for label-based retrieval metrics (mAP@K of the hashing papers, PCME's PMRP), read from the
annotation files those papers use.

A :class:`LabelSet` is a list of media files with a multi-hot (N, C) label matrix and the class names; it feeds
:func:`xmr.eval.label_map` / :func:`xmr.eval.pmrp` directly (``labels.labels``).

Readers (each documents its layout):

* :func:`read_hash_list` - the list files of the deep-hashing code bases (HashNet, DeepHash-pytorch, DHD):
  ``NAME l_1 l_2 ... l_C`` one image per line (multi-hot, e.g. ImageNet-100 / NUS-WIDE-21 / MS-COCO-80
  ``*_Train.txt``, ``*_DB.txt``, ``*_Query.txt``), or ``NAME CLASS_INDEX`` (single label).
* :func:`read_coco_instances` - COCO ``instances_*.json``: an image's labels are the categories of its instance
  annotations (PCME's PMRP plausibility); images without any instance get an empty row.
* :func:`read_cub_classes` - CUB-200-2011: ``images.txt`` (``ID PATH``), ``image_class_labels.txt``
  (``ID CLASS``), ``classes.txt`` (``CLASS NAME``).
* :func:`read_activitynet_classes` - ActivityNet v1.3 (``activity_net.v1-3.min.json``): a video's labels are the
  ``label`` of its ``annotations`` (one or more of the 200 activity classes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .base import load_json, require_file


@dataclass(frozen=True)
class LabelSet:
    media: tuple[str, ...]  # absolute paths (or ids, for sources that name videos by id)
    labels: np.ndarray  # (N, C) bool multi-hot
    classes: tuple[str, ...]  # C class names (or indices as strings when the source has no names)

    def __post_init__(self):
        if self.labels.ndim != 2 or self.labels.shape != (len(self.media), len(self.classes)):
            raise ConfigError(f"labels must be (N, C) = ({len(self.media)}, {len(self.classes)}), "
                              f"got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.media)


def _read_lines(path: str) -> list[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None


def read_hash_list(list_file: str, image_root: str | None = None, num_classes: int | None = None) -> LabelSet:
    """A deep-hashing list file; ``num_classes`` is needed for single-label lines (``NAME CLASS_INDEX``)."""
    path = require_file(list_file, "label list")
    root = os.path.abspath(image_root) if image_root else os.path.dirname(path)
    rows = _read_lines(path)
    if not rows:
        raise ConfigError(f"{path}: no lines")
    names, vecs, width = [], [], None
    for n, line in rows:
        parts = line.split()
        if len(parts) < 2:
            raise ConfigError(f"{path}, line {n}: expected 'NAME LABELS...', got {line[:80]!r}")
        try:
            vals = [int(v) for v in parts[1:]]
        except ValueError:
            raise ConfigError(f"{path}, line {n}: labels must be integers") from None
        if len(vals) == 1 and (num_classes or 0) > 1:
            if not 0 <= vals[0] < num_classes:
                raise ConfigError(f"{path}, line {n}: class index {vals[0]} outside [0, {num_classes - 1}]")
            vec = np.zeros(num_classes, dtype=bool)
            vec[vals[0]] = True
        else:
            if any(v not in (0, 1) for v in vals):
                raise ConfigError(f"{path}, line {n}: a multi-hot row must hold 0/1 (single-label lists need "
                                  "num_classes)")
            vec = np.array(vals, dtype=bool)
        if width is None:
            width = vec.size
        elif vec.size != width:
            raise ConfigError(f"{path}, line {n}: {vec.size} labels, but earlier lines have {width}")
        names.append(os.path.join(root, parts[0]))
        vecs.append(vec)
    return LabelSet(tuple(names), np.stack(vecs), tuple(str(i) for i in range(width)))


def read_coco_instances(instances_json: str, image_root: str | None = None) -> LabelSet:
    """Per image of a COCO instances file: its instance categories (columns ordered by category id)."""
    path = require_file(instances_json, "COCO instances file")
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list) or not isinstance(data.get("annotations"), list):
        raise ConfigError(f"{path}: not a COCO instances file (needs images, categories and annotations lists)")
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        col = {cid: j for j, (cid, _) in enumerate(cats)}
        images = [(int(im["id"]), str(im["file_name"])) for im in data["images"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: malformed categories or images entry ({e!r})") from None
    row = {iid: i for i, (iid, _) in enumerate(images)}
    labels = np.zeros((len(images), len(cats)), dtype=bool)
    for k, ann in enumerate(data["annotations"]):
        try:
            i, j = row[int(ann["image_id"])], col[int(ann["category_id"])]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: annotation #{k} names an unknown image or category") from None
        labels[i, j] = True
    root = os.path.abspath(image_root) if image_root else os.path.dirname(path)
    return LabelSet(tuple(os.path.join(root, f) for _, f in images), labels, tuple(n for _, n in cats))


def read_cub_classes(root: str) -> LabelSet:
    """CUB-200-2011 class labels (single label per image) from the dataset's own text files."""
    root = os.path.abspath(root)
    images = {n_id: p for n_id, p in _pairs(require_file(os.path.join(root, "images.txt"), "CUB images.txt"))}
    classes = sorted((int(c), name) for c, name in _pairs(require_file(os.path.join(root, "classes.txt"),
                                                                          "CUB classes.txt")))
    col = {c: j for j, (c, _) in enumerate(classes)}
    lab_path = require_file(os.path.join(root, "image_class_labels.txt"), "CUB image_class_labels.txt")
    media, rows = [], []
    for img_id, c in _pairs(lab_path):
        if img_id not in images:
            raise ConfigError(f"{lab_path}: image id {img_id} is not in images.txt")
        if int(c) not in col:
            raise ConfigError(f"{lab_path}: class {c} is not in classes.txt")
        vec = np.zeros(len(classes), dtype=bool)
        vec[col[int(c)]] = True
        media.append(os.path.join(root, "images", images[img_id]))
        rows.append(vec)
    if not rows:
        raise ConfigError(f"{lab_path}: no labels")
    return LabelSet(tuple(media), np.stack(rows), tuple(n for _, n in classes))


def _pairs(path: str) -> list[tuple[str, str]]:
    out = []
    for n, line in _read_lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ConfigError(f"{path}, line {n}: expected two fields, got {line[:80]!r}")
        if not parts[0].isdigit():
            raise ConfigError(f"{path}, line {n}: the first field must be a numeric id")
        out.append((parts[0], parts[1]))
    return out


def read_activitynet_classes(annotation_json: str, subset: str | None = None) -> LabelSet:
    """ActivityNet v1.3 activity labels per video (``media`` holds the video ids as the file keys them - the
    official file has no ``v_`` prefix; ``subset``: "training" / "validation" / "testing" or all)."""
    path = require_file(annotation_json, "ActivityNet annotation file")
    data = load_json(path)
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict):
        raise ConfigError(f"{path}: not an ActivityNet annotation file (no 'database' object)")
    ids, sets = [], []
    for vid, entry in db.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: database[{vid!r}] is not an object")
        if subset is not None and entry.get("subset") != subset:
            continue
        anns = entry.get("annotations") or []
        try:
            sets.append({str(a["label"]) for a in anns})
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: database[{vid!r}].annotations entries need a 'label'") from None
        ids.append(str(vid))
    if not ids:
        raise ConfigError(f"{path}: no video" + (f" in subset {subset!r}" if subset else ""))
    classes = tuple(sorted(set().union(*sets)))
    col = {c: j for j, c in enumerate(classes)}
    labels = np.zeros((len(ids), max(len(classes), 1)), dtype=bool)
    for i, s in enumerate(sets):
        labels[i, [col[c] for c in s]] = True
    return LabelSet(tuple(ids), labels[:, :len(classes)], classes)
