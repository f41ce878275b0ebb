"""Retrieval datasets: a gallery of media items with captions, loaded from a spec string.

A spec is ``SCHEME:PATH[:SPLIT][?KEY=VALUE&...]``::

    coco:/data/coco:val2017                      # MS-COCO caption JSONs, one split
    karpathy:/data/dataset_coco.json:test?root=/data/coco2014&captions=first5
    csv:/data/my_photos                          # /data/my_photos/captions.csv
    manifest:/data/eval.jsonl  (or just /data/eval.jsonl)

Options every scheme understands: ``split`` (same as the ``:SPLIT`` suffix; ``a+b`` selects several),
``captions`` (``all`` / ``first`` / ``firstN``), ``limit`` (first N items). Every built-in loader also takes
``root`` (the folder relative media paths resolve against). See docs/datasets.md.
"""
from __future__ import annotations

import os
from dataclasses import replace

from ..errors import ConfigError
from ..spec import parse_spec
from . import activitynet as _activitynet  # noqa: F401  (registers "activitynet")
from . import coco as _coco  # noqa: F401  (registers "coco")
from . import didemo as _didemo  # noqa: F401  (registers "didemo")
from . import folder_csv as _folder_csv  # noqa: F401  (registers "csv")
from . import karpathy as _karpathy  # noqa: F401  (registers "karpathy")
from . import lsmdc as _lsmdc  # noqa: F401  (registers "lsmdc")
from . import manifest as _manifest  # noqa: F401  (registers "manifest")
from . import msrvtt as _msrvtt  # noqa: F401  (registers "msrvtt")
from . import msvd as _msvd  # noqa: F401  (registers "msvd")
from . import multi30k as _multi30k  # noqa: F401  (registers "multi30k", "xtd")
from . import parquet as _parquet  # noqa: F401  (registers "parquet")
from . import vatex as _vatex  # noqa: F401  (registers "vatex")
from . import webdataset as _webdataset  # noqa: F401  (registers "wds")
from . import tvr as _tvr  # noqa: F401  (registers "tvr")
from . import youcook2 as _youcook2  # noqa: F401  (registers "youcook2")
from .base import (
    COMMON_OPTIONS,
    DATASETS,
    Item,
    RetrievalDataset,
    apply_caption_policy,
    format_spec,
    normalize_caption_policy,
    parse_caption_policy,
    parse_options,
    split_suffix,
)
from .manifest import write_manifest

#: a bare path (no scheme) is routed by how its file name ends
_BY_EXTENSION = ((".jsonl", "manifest"), (".csv", "csv"), (".tsv", "csv"))


def _detect_scheme(path: str) -> str | None:
    name = os.path.basename(path).lower()
    if name.startswith("dataset_") and name.endswith(".json"):
        return "karpathy"
    return next((scheme for ext, scheme in _BY_EXTENSION if name.endswith(ext)), None)


def parse_dataset_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``"coco:/d:val2017?captions=first5"`` -> ``("coco", "/d", {"split": "val2017", "captions": "first5"})``.

    The ``:SPLIT`` suffix is returned as the ``split`` option (ConfigError if both are given and differ).
    Bare paths ending in ``.jsonl`` (manifest), ``.csv`` / ``.tsv`` (csv) or named ``dataset_*.json``
    (karpathy) get their scheme from the file name."""
    spec = parse_spec(spec, "dataset", hint="e.g. coco:/data/coco:val2017 or /data/eval.jsonl").raw
    head, sep, query = spec.partition("?")
    options = parse_options(query, spec) if sep else {}
    scheme, arg = parse_spec(head, "dataset") if head.strip() else ("", None)  # SCHEME:REST at the first colon
    if not (arg is not None and scheme in DATASETS):
        detected = _detect_scheme(split_suffix(head)[0])
        if detected is None:
            problem = f"unknown dataset scheme {scheme!r}" if arg is not None else "no dataset scheme"
            raise ConfigError(
                f"{problem} in {spec!r}. Available: {', '.join(DATASETS.names())}. "
                f"A dataset spec is SCHEME:PATH[:SPLIT][?options], e.g. coco:/data/coco:val2017, "
                f"or a path ending in .jsonl / .csv (see docs/datasets.md)"
            )
        scheme, arg = detected, head
    path, suffix = split_suffix(arg)
    if not path:
        raise ConfigError(f"dataset spec {spec!r} has no path after '{scheme}:'")
    if suffix is not None:
        if options.get("split", suffix) != suffix:
            raise ConfigError(
                f"dataset spec {spec!r} names split {suffix!r} and split={options['split']!r}; give one"
            )
        options["split"] = suffix
    return scheme, path, options


def _agree(key: str, from_spec: str | None, from_arg: str | None, spec: str) -> str | None:
    if from_spec is not None and from_arg is not None and from_spec != from_arg:
        raise ConfigError(f"dataset spec {spec!r} says {key}={from_spec!r} but {key}={from_arg!r} was also given")
    return from_arg if from_arg is not None else from_spec


def load_dataset(
    spec: str, split: str | None = None, captions: str | None = None, *, check_media: bool = False
) -> RetrievalDataset:
    """Load a retrieval dataset from a spec string (see the module docstring and docs/datasets.md).

    Args:
        spec: ``SCHEME:PATH[:SPLIT][?KEY=VALUE&...]`` or a bare ``.jsonl`` / ``.csv`` / ``dataset_*.json`` path.
        split: split(s) to keep, e.g. ``"test"`` or ``"train+restval"``; ``None`` keeps all. May also be given
            in the spec; both at once must agree.
        captions: caption policy ``"all"`` (default), ``"first"`` or ``"firstN"``; may also be the spec's
            ``captions`` option; both at once must agree.
        check_media: stat every media file and raise ConfigError listing missing ones (off by default: loading
            never touches the media files).

    The returned dataset's ``spec`` is canonical (absolute path, options in a fixed order, defaults left out):
    ``load_dataset(ds.spec)`` gives the same dataset from any working directory.
    """
    scheme, path, options = parse_dataset_spec(spec)
    split = _agree("split", options.pop("split", None), split, spec)
    policy = _agree("captions", options.pop("captions", None), captions, spec)
    policy = normalize_caption_policy(policy if policy is not None else "all")
    limit = options.pop("limit", None)
    if limit is not None and not (limit.isdigit() and int(limit) >= 1):
        raise ConfigError(f"limit={limit!r} in dataset spec {spec!r}: give a positive number of items")
    ds = DATASETS.get(scheme)(path, split=split, caption_policy=policy, options=dict(options))
    canonical = dict(options)
    if split is not None:
        canonical["split"] = split
    if policy != "all":
        canonical["captions"] = policy
    ds = replace(ds, spec=format_spec(scheme, os.path.abspath(os.path.expanduser(path)), canonical))
    if limit is not None:
        ds = ds.subset(int(limit))
    if check_media:
        missing = ds.check_media()
        if missing:
            shown = "\n  ".join(missing[:5]) + ("\n  ..." if len(missing) > 5 else "")
            raise ConfigError(
                f"{len(missing)} of {len(ds)} media files of {ds.name} do not exist:\n  {shown}\n"
                f"Check that the images are downloaded where docs/datasets.md says, or set the root option "
                f"(e.g. {scheme}:{path}?root=/path/to/images)"
            )
    return ds


def list_datasets() -> list[tuple[str, str]]:
    """(scheme, help) of every registered dataset loader."""
    return [(e.name, e.help) for e in DATASETS]


__all__ = [
    "DATASETS",
    "COMMON_OPTIONS",
    "Item",
    "RetrievalDataset",
    "load_dataset",
    "list_datasets",
    "parse_dataset_spec",
    "write_manifest",
    "apply_caption_policy",
    "parse_caption_policy",
    "normalize_caption_policy",
]
