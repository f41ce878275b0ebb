"""Retrieval datasets: the :class:`Item` / :class:`RetrievalDataset` types, caption policies, spec strings and
the loader registry.

A dataset is a gallery of media items (images now, videos or video moments later), each with one or more
captions. The evaluator uses the flat views: ``texts`` (every caption, item by item) and ``text_to_item`` (the
gallery index of each caption's item).

Invariants every :class:`RetrievalDataset` keeps (checked on construction):

- at least one item; every item has at least one non-empty caption;
- ``media`` paths are absolute (made absolute on construction, never resolved through symlinks or stat'ed);
- the captions of item ``i`` are ``texts[text_offsets[i]:text_offsets[i + 1]]``.

Nothing here touches the file system except :meth:`RetrievalDataset.check_media` (on request).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ..errors import ConfigError
from .. import registries
from ..registry import Registry


# --------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    """One gallery entry: a media file and its captions."""

    media: str  # absolute path of the image / video file
    captions: tuple[str, ...]  # in the loader's documented order (a list given here is stored as a tuple)
    split: str | None = None  # "train" / "val2017" / ... as named by the source annotation file
    id: str | None = None  # the source's id for the item (COCO image id, Karpathy cocoid/imgid, manifest "id")
    start: float | None = None  # video moments only: start of the moment in seconds
    end: float | None = None  # video moments only: end of the moment in seconds

    def __post_init__(self) -> None:
        if not isinstance(self.media, (str, os.PathLike)) or not str(self.media):
            raise ConfigError(f"item media must be a non-empty path, got {self.media!r}")
        object.__setattr__(self, "media", os.path.abspath(os.fspath(self.media)))
        caps = (self.captions,) if isinstance(self.captions, str) else tuple(self.captions)
        for c in caps:
            if not isinstance(c, str) or not c.strip():
                raise ConfigError(f"{self.media}: captions must be non-empty strings, got {c!r}")
        object.__setattr__(self, "captions", caps)
        if self.id is not None:
            object.__setattr__(self, "id", str(self.id))
        for k in ("start", "end"):
            v = getattr(self, k)
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"{self.media}: {k} must be a number of seconds, got {v!r}") from None
                if not np.isfinite(v) or v < 0:
                    raise ConfigError(f"{self.media}: {k} must be a finite number of seconds >= 0, got {v!r}")
                object.__setattr__(self, k, v)
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ConfigError(f"{self.media}: end ({self.end}) must be after start ({self.start})")


# ---------------------------------------------------------------------------------------- caption policies

_POLICY_RE = re.compile(r"^(all|first(\d*))$")


def parse_caption_policy(policy: str) -> int | None:
    """``"all"`` -> ``None`` (keep every caption); ``"first"`` -> 1; ``"firstN"`` -> N (N >= 1)."""
    m = _POLICY_RE.match(policy.strip().lower()) if isinstance(policy, str) else None
    if m is None or (m.group(2) and int(m.group(2)) < 1):
        raise ConfigError(
            f"unknown caption policy {policy!r}. Use 'all' (every caption), 'first' (one per item) "
            f"or 'firstN' such as 'first5' (the usual COCO/Flickr protocol)"
        )
    if m.group(1) == "all":
        return None
    return int(m.group(2)) if m.group(2) else 1


def normalize_caption_policy(policy: str) -> str:
    """Canonical spelling: ``"ALL"`` -> ``"all"``, ``"first1"`` -> ``"first"``, ``"First5"`` -> ``"first5"``."""
    n = parse_caption_policy(policy)
    return "all" if n is None else ("first" if n == 1 else f"first{n}")


def apply_caption_policy(captions: Sequence[str], policy: str) -> tuple[str, ...]:
    """Keep the captions ``policy`` selects, in order. Items with fewer than N captions keep all they have."""
    n = parse_caption_policy(policy)
    return tuple(captions) if n is None else tuple(captions[:n])


# ----------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class RetrievalDataset:
    """A gallery of :class:`Item` s plus the flat views a retrieval evaluator needs.

    Build it with :func:`xmr.data.load_dataset`, or directly from items (the caption policy is then only a
    label: apply it with :meth:`from_items`).
    """

    name: str  # short human label, e.g. "coco:coco-mini/val2017"
    items: tuple[Item, ...] = field(repr=False)
    spec: str = ""  # canonical spec string: load_dataset(spec) rebuilds this dataset (see docs/datasets.md)
    source_files: tuple[str, ...] = ()  # absolute paths of the annotation files read (for fingerprints)
    caption_policy: str = "all"  # which captions were kept: "all", "first", "firstN"

    # derived views, computed once on construction
    _texts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _text_to_item: np.ndarray = field(init=False, repr=False, compare=False)
    _text_offsets: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(self.items)
        if not items:
            raise ConfigError(f"dataset {self.name!r} has no items")
        for it in items:
            if not isinstance(it, Item):
                raise ConfigError(f"dataset {self.name!r}: items must be xmr.data.Item, got {type(it).__name__}")
            if not it.captions:
                raise ConfigError(f"dataset {self.name!r}: item {it.media} has no captions")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "source_files", tuple(os.path.abspath(os.fspath(p)) for p in self.source_files))
        object.__setattr__(self, "caption_policy", normalize_caption_policy(self.caption_policy))
        counts = np.fromiter((len(it.captions) for it in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        t2i = np.repeat(np.arange(len(items), dtype=np.int64), counts)
        offsets.flags.writeable = False
        t2i.flags.writeable = False
        object.__setattr__(self, "_texts", tuple(c for it in items for c in it.captions))
        object.__setattr__(self, "_text_to_item", t2i)
        object.__setattr__(self, "_text_offsets", offsets)

    @classmethod
    def from_items(
        cls,
        name: str,
        items: Iterable[Item],
        *,
        caption_policy: str = "all",
        spec: str = "",
        source_files: Iterable[str | os.PathLike] = (),
    ) -> "RetrievalDataset":
        """Build a dataset, applying ``caption_policy`` to each item's captions (in the order given)."""
        n = parse_caption_policy(caption_policy)
        if n is not None:
            items = [it if len(it.captions) <= n else replace(it, captions=it.captions[:n]) for it in items]
        return cls(name, tuple(items), spec=spec, source_files=tuple(source_files), caption_policy=caption_policy)

    # flat views -------------------------------------------------------------------------------------------
    @property
    def texts(self) -> list[str]:
        """All captions, item by item, each item's in its loader's order. (T,) — a fresh list per call."""
        return list(self._texts)

    @property
    def text_to_item(self) -> np.ndarray:
        """(T,) int64, read-only: gallery index of each text's item (ground truth for text -> media)."""
        return self._text_to_item

    @property
    def text_offsets(self) -> np.ndarray:
        """(N + 1,) int64, read-only: item ``i`` owns texts ``text_offsets[i]:text_offsets[i + 1]``."""
        return self._text_offsets

    @property
    def media(self) -> list[str]:
        """(N,) absolute media paths in gallery order."""
        return [it.media for it in self.items]

    @property
    def num_texts(self) -> int:
        return len(self._texts)

    @property
    def splits(self) -> list[str]:
        """Distinct split names of the items, in first-seen order (``None`` is left out)."""
        return list(dict.fromkeys(it.split for it in self.items if it.split is not None))

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (
            f"RetrievalDataset(name={self.name!r}, items={len(self.items)}, texts={len(self._texts)}, "
            f"caption_policy={self.caption_policy!r}, spec={self.spec!r})"
        )

    # operations ---------------------------------------------------------------------------------------------
    def subset(self, n: int) -> "RetrievalDataset":
        """The first ``n`` items (for quick runs). ``spec`` gains ``limit=n`` so fingerprints tell it apart;
        ``n >= len(self)`` returns ``self`` unchanged."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"subset size must be a positive integer, got {n!r}")
        if n >= len(self.items):
            return self
        spec = with_spec_option(self.spec, "limit", str(int(n))) if self.spec else ""
        return replace(self, name=f"{self.name}[:{int(n)}]", items=self.items[: int(n)], spec=spec)

    def check_media(self) -> list[str]:
        """Paths of media files that do not exist (or are not regular files), in gallery order.

        Loaders never stat media; call this (or ``load_dataset(..., check_media=True)``) before a long run."""
        return [m for m in dict.fromkeys(self.media) if not os.path.isfile(m)]


# ------------------------------------------------------------------------------------------- spec strings

#: options every loader understands; they are handled by load_dataset, not passed on to the loader
COMMON_OPTIONS = ("split", "captions", "limit")
_OPTION_ORDER = ("split", "captions", "root")


def parse_options(query: str, spec: str) -> dict[str, str]:
    """``"split=test&root=/x"`` -> ``{"split": "test", "root": "/x"}``. Empty values and repeats are errors."""
    out: dict[str, str] = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not key or not value:
            raise ConfigError(
                f"bad option {part!r} in dataset spec {spec!r}: options are KEY=VALUE pairs joined by '&', "
                f"e.g. coco:/data/coco?split=val2017&captions=first5"
            )
        if key in out:
            raise ConfigError(f"option {key!r} given twice in dataset spec {spec!r}")
        out[key] = value
    return out


def split_suffix(arg: str) -> tuple[str, str | None]:
    """``"/data/coco:val2017"`` -> ``("/data/coco", "val2017")``. The part after the last colon is a split only
    if it has no path separator and the whole ``arg`` is not an existing path (so ``C:\\data`` stays a path)."""
    path, sep, last = arg.rpartition(":")
    if sep and path and last and "/" not in last and "\\" not in last and not os.path.exists(arg):
        return path, last
    return arg, None


def format_spec(scheme: str, path: str, options: Mapping[str, str]) -> str:
    """Canonical spec: ``scheme:path?split=..&captions=..&root=..&<others sorted>&limit=..`` (set options only)."""
    keys = [k for k in _OPTION_ORDER if k in options]
    keys += sorted(k for k in options if k not in _OPTION_ORDER and k != "limit")
    keys += ["limit"] if "limit" in options else []
    query = "&".join(f"{k}={options[k]}" for k in keys)
    return f"{scheme}:{path}" + (f"?{query}" if query else "")


def with_spec_option(spec: str, key: str, value: str) -> str:
    """Return canonical ``spec`` (as made by :func:`format_spec`) with option ``key`` set to ``value``."""
    head, sep, query = spec.partition("?")
    options = parse_options(query, spec) if sep else {}
    options[key] = value
    scheme, _, path = head.partition(":")
    return format_spec(scheme, path, options)


# ----------------------------------------------------------------------------------------------- loaders


class Loader(Protocol):
    def __call__(
        self, arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
    ) -> RetrievalDataset: ...


#: scheme -> loader(arg, *, split, caption_policy, options) -> RetrievalDataset.
#: ``arg`` is the path (any ``:SPLIT`` suffix and ``?options`` already removed); ``split`` may name several
#: splits joined by ``+``; ``options`` holds the loader-specific options (e.g. ``root``), which the loader must
#: check with :func:`take_options`.
DATASETS: Registry[Loader] = registries.DATASETS  # defined in xmr.registries with every other registry


def take_options(scheme: str, options: Mapping[str, str], allowed: Sequence[str]) -> dict[str, str]:
    """Return ``options`` after checking every key is in ``allowed`` (ConfigError naming the valid ones)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(list(COMMON_OPTIONS) + list(allowed))
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {scheme}: datasets. Valid options: {valid}")
    return dict(options)


def requested_splits(split: str | None) -> list[str] | None:
    """``"train+restval"`` -> ``["train", "restval"]``; ``None`` -> ``None`` (every split)."""
    if split is None:
        return None
    parts = [s.strip() for s in split.split("+")]
    if not all(parts):
        raise ConfigError(f"bad split {split!r}: give a split name, or several joined by '+' (train+restval)")
    return list(dict.fromkeys(parts))


def select_split(items: Sequence[Item], split: str | None, source: str) -> list[Item]:
    """Items whose split is one of ``split`` (``+``-joined), keeping order; ConfigError listing the available
    splits when a requested one has no item."""
    wanted = requested_splits(split)
    if wanted is None:
        return list(items)
    available = list(dict.fromkeys(it.split for it in items if it.split is not None))
    missing = [s for s in wanted if s not in available]
    if missing:
        avail = ", ".join(available) if available else "none (the file has no split information)"
        raise ConfigError(f"{source}: no items in split {', '.join(map(repr, missing))}. Available splits: {avail}")
    keep = set(wanted)
    return [it for it in items if it.split in keep]


def require_file(path: str | os.PathLike, what: str) -> str:
    """Absolute path of an existing file, or ConfigError naming it."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(p):
        hint = " (it is a folder)" if os.path.isdir(p) else ""
        raise ConfigError(f"{what} not found: {p}{hint}. See docs/datasets.md for the expected layout")
    return p


def load_json(path: str) -> object:
    """The parsed JSON file (a UTF-8 BOM is accepted); bad JSON, text that is not UTF-8, nesting deeper than
    Python's JSON parser goes, or an unreadable file raise ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply to be a dataset file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None


def iter_jsonl(path: str) -> Iterator[tuple[str, object]]:
    """(``"PATH, line N"``, parsed object) for every non-blank line of a JSON-lines file; bad JSON, a line that
    is not UTF-8 or is nested too deeply raise ConfigError with the line number."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}, line {lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                                  ) from None
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise ConfigError(f"{where}: JSON nested too deeply") from None


def group_rows(rows: Iterable[tuple[str, str, Sequence[str], Mapping[str, object]]], source: str) -> list[Item]:
    """Merge rows ``(where, media, captions, extra)`` that share media (and ``start`` / ``end``) into items.

    ``extra`` may hold ``split``, ``id``, ``start``, ``end``. Items keep the order of their first row, captions
    the row order. A ``split`` or ``id`` that differs between rows of one item is a ConfigError naming both
    rows (``where`` is e.g. ``"file.csv, line 7"``)."""
    groups: dict[tuple, tuple[str, list[str], dict]] = {}
    for where, media, caps, extra in rows:
        key = (media, extra.get("start"), extra.get("end"))
        if key not in groups:
            groups[key] = (where, list(caps), dict(extra))
            continue
        first, captions, merged = groups[key]
        for k in ("split", "id"):
            if extra.get(k) is None:
                continue
            if merged.get(k) is not None and merged[k] != extra[k]:
                raise ConfigError(
                    f"{where}: {k} {extra[k]!r} differs from {merged[k]!r} given for the same media at "
                    f"{first}; one item has one {k}"
                )
            merged[k] = extra[k]
        captions.extend(caps)
    if not groups:
        raise ConfigError(f"{source}: no items (empty file?)")
    out = []
    for (media, _, _), (where, caps, extra) in groups.items():
        try:
            out.append(Item(media=media, captions=tuple(caps), **extra))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return out


def resolve_media(path: str, base: str) -> str:
    """Absolute form of ``path``; relative paths are taken relative to ``base`` (``~`` is expanded)."""
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


__all__ = [
    "Item",
    "RetrievalDataset",
    "DATASETS",
    "Loader",
    "COMMON_OPTIONS",
    "parse_caption_policy",
    "normalize_caption_policy",
    "apply_caption_policy",
    "parse_options",
    "split_suffix",
    "format_spec",
    "with_spec_option",
    "take_options",
    "requested_splits",
    "select_split",
    "require_file",
    "resolve_media",
    "group_rows",
]
