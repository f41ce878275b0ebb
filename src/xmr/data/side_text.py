"""Side text of a dataset as a manifest the ``sidecar`` expert reads (``xmr index --experts sidecar --manifest FILE``).

Loaders whose source carries text *about* an item besides its caption (a recipe's ingredients, a product's brand
and category, the live comments of a video, the ASR of a clip) register a reader here; :func:`side_text` returns
one JSON object per media file::

    {"media": "/abs/path/product.jpg", "title": "...", "comments": ["...", ...],
     "entities": {"brand": ["Acme"], "category": ["shoes"]},
     "asr": [{"start": 1.0, "end": 3.5, "text": "..."}]}

and :func:`write_side_manifest` writes them as JSON lines. Keys other than ``media`` become the expert's fields
(``manifest:title``, ``manifest:comments`` (each comment its own row), ``entity:brand``, ``manifest:asr`` (timed
rows)); see :mod:`xmr.experts.sidecar`.
"""
from __future__ import annotations

import json
import os
from typing import Callable

from ..errors import ConfigError

#: scheme -> reader(path, options) -> [side-text object]; filled by the loaders that have side text
SIDE_TEXT: dict[str, Callable[[str, dict], list[dict]]] = {}


def register_side_text(scheme: str):
    def deco(fn):
        SIDE_TEXT[scheme] = fn
        return fn

    return deco


def side_text(spec: str) -> list[dict]:
    """The side-text objects of dataset ``spec`` (its media files in loader order, one object each)."""
    from . import parse_dataset_spec

    scheme, path, options = parse_dataset_spec(spec)
    if scheme not in SIDE_TEXT:
        raise ConfigError(f"dataset scheme {scheme!r} has no side text; schemes with side text: "
                          f"{', '.join(sorted(SIDE_TEXT))}")
    options.pop("captions", None)
    options.pop("limit", None)
    merged: dict[str, dict] = {}
    for obj in SIDE_TEXT[scheme](path, options):
        cur = merged.setdefault(obj["media"], {"media": obj["media"]})
        for k, v in obj.items():
            if k == "media" or v in (None, "", [], {}):
                continue
            if isinstance(v, list) and isinstance(cur.get(k), list):
                cur[k] = cur[k] + [x for x in v if x not in cur[k]]
            elif isinstance(v, dict) and isinstance(cur.get(k), dict):
                cur[k] = {**cur[k], **v}
            else:
                cur.setdefault(k, v)
    return list(merged.values())


def write_side_manifest(spec: str, out: str) -> int:
    """Write the side text of ``spec`` to ``out`` (JSON lines, media paths absolute); returns the number of lines."""
    rows = side_text(spec)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return len(rows)


__all__ = ["SIDE_TEXT", "register_side_text", "side_text", "write_side_manifest"]
