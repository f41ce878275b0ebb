"""Helpers shared by the video dataset loaders (msrvtt, msvd, didemo, activitynet, lsmdc, vatex, youcook2).

Nothing here is a loader; each dataset is its own small module that registers itself in ``DATASETS``.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Mapping, Sequence

from ..errors import ConfigError
from .base import Item, RetrievalDataset, load_json, requested_splits

_EXT_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")


def dataset_folder(arg: str, what: str) -> str:
    """Absolute path of an existing annotation folder, or ConfigError naming it."""
    folder = os.path.abspath(os.path.expanduser(arg))
    if not os.path.isdir(folder):
        raise ConfigError(f"{what} folder not found: {folder}. See docs/datasets.md for the expected files")
    return folder


def annotation_file(folder: str, name: str, what: str) -> str:
    """``folder/name`` if it exists, else ConfigError naming the full path."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise ConfigError(f"{what} not found: {path}. See docs/datasets.md for where to get it")
    return path


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({e})") from None


def video_root(options: Mapping[str, str], default: str) -> str:
    """The ``root`` option (the folder holding the videos) made absolute, or ``default``."""
    return os.path.abspath(os.path.expanduser(options.get("root", default)))


def video_ext(options: Mapping[str, str], default: str) -> str:
    """The ``ext`` option (video file extension without the dot), checked."""
    ext = options.get("ext", default).lstrip(".")
    if not _EXT_RE.match(ext):
        raise ConfigError(f"ext={ext!r}: give a file extension such as mp4, avi, mkv or webm (no dot, no path)")
    return ext


def choose(options: Mapping[str, str], key: str, allowed: Sequence[str], scheme: str) -> str:
    """Value of an enumerated option (first of ``allowed`` is the default)."""
    value = options.get(key, allowed[0]).lower()
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} for {scheme}: datasets; use one of {', '.join(allowed)}")
    return value


def split_files(folder: str, files: Mapping[str, str], split: str | None, what: str) -> list[tuple[str, str]]:
    """``[(split, path)]`` to read: the requested splits (``+``-joined, each must be a known split whose file
    exists), or, without a split, every known split whose file exists (ConfigError when there is none)."""
    wanted = requested_splits(split)
    if wanted is None:
        found = [(s, os.path.join(folder, n)) for s, n in files.items() if os.path.isfile(os.path.join(folder, n))]
        if not found:
            expected = ", ".join(os.path.join(folder, n) for n in files.values())
            raise ConfigError(f"no {what} annotation file found; expected one of: {expected}")
        return found
    unknown = [s for s in wanted if s not in files]
    if unknown:
        raise ConfigError(
            f"unknown {what} split {', '.join(map(repr, unknown))}. Available splits: {', '.join(files)}"
        )
    return [(s, annotation_file(folder, files[s], f"{what} {s!r} split file")) for s in wanted]


def split_dataset(
    scheme: str,
    folder: str,
    files: Mapping[str, str],
    split: str | None,
    what: str,
    caption_policy: str,
    read: Callable[[str, str], list[Item]],
    suffix: str = "",
) -> RetrievalDataset:
    """The dataset of the split files :func:`split_files` selects, each read with ``read(path, split name)``:
    items in file order, named ``scheme[:split][suffix]``, ``source_files`` the files read."""
    chosen = split_files(folder, files, split, what)
    items = [it for s, p in chosen for it in read(p, s)]
    return RetrievalDataset.from_items(
        scheme + (f":{split}" if split else "") + suffix,
        items,
        caption_policy=caption_policy,
        source_files=[p for _, p in chosen],
    )


def seconds(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}") from None


def text(value: object, where: str) -> str:
    """A caption: a non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty caption string, got {value!r:.80}")
    return value.strip()


def paragraph(sentences: Sequence[str]) -> str:
    """Sentences joined by single spaces in the order given (annotation-file order), as CLIP4Clip builds the
    paragraph captions of DiDeMo (``" ".join`` of the descriptions) and ActivityNet (``" ".join`` of
    ``sentences``). Each sentence is already stripped, so the reference's doubled spaces (ActivityNet
    sentences start with a space) collapse; the words and their order are the same."""
    return " ".join(sentences)


def read_id_list(path: str, what: str) -> list[str]:
    """Ids of a split list file (one per line, surrounding blanks stripped, blank lines skipped), in order,
    duplicates dropped; ConfigError when it holds none. Accepts a JSON list of strings too (ActivityNet's
    ``*_ids.json``)."""
    if path.endswith(".json"):
        data = load_json(path)
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise ConfigError(f"{path}: expected a JSON list of {what} id strings")
        raw = data
    else:
        raw = read_lines(path)
    ids = list(dict.fromkeys(v.strip() for v in raw if v.strip()))
    if not ids:
        raise ConfigError(f"{path}: no {what} ids")
    return ids


__all__ = [
    "dataset_folder",
    "annotation_file",
    "load_json",
    "read_lines",
    "video_root",
    "video_ext",
    "choose",
    "split_files",
    "split_dataset",
    "seconds",
    "text",
    "paragraph",
    "read_id_list",
]
