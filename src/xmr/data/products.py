"""Product datasets with entities as their own field (EI-CLIP's side information).

``product1m:DIR[:train|dev|test][?root=IMAGES]`` — Product1M (Zhan et al., ICCV 2021) release files::

    DIR/product1m_<split>_ossurl_v2.txt     one product per line, fields separated by ``#####``:
        <product id>#####<title>#####<image url>#####<mirror url>#####<instance 1>#;#<instance 2>...
    ROOT/<product id>.jpg                   (ROOT defaults to DIR/images)

Item: the product image, caption = its title; side text: ``title`` and the instance names as entities
(``entities.instance``).

``amazon:FILE[?root=IMAGES]`` — Amazon reviews product metadata, ``meta_<Category>.json`` / ``.jsonl``, one
product per line, in any of the three releases:

* 2023 (McAuley lab): JSON lines with ``parent_asin``, ``title``, ``main_category``, ``categories``, ``store``,
  ``features``, ``description``, ``details``;
* 2018: JSON lines with ``asin``, ``title``, ``brand``, ``category`` (or ``categories``), ``feature``, ``description``;
* 2014: one Python dict literal per line (``asin``, ``title``, ``brand``, ``categories`` (list of lists),
  ``description``), read with :func:`ast.literal_eval` (literals only, never code).

Item: ``ROOT/<asin>.jpg`` (ROOT defaults to the file's folder + ``/images``; the images are downloaded from the
metadata's URLs by the user), caption = the title; products without a title are left out. Side text: ``title``,
``description``, ``features``, and entities ``brand`` (``brand`` / ``store``) and ``category`` (the most specific
category of each path, plus ``main_category``). No split (the metadata has none).
"""
from __future__ import annotations

import ast
import json
import os
from typing import Mapping

from ..errors import ConfigError
from ._video_common import dataset_folder, read_lines, split_files
from .base import DATASETS, Item, RetrievalDataset, take_options
from .side_text import register_side_text

PRODUCT1M_FILES = {s: f"product1m_{s}_ossurl_v2.txt" for s in ("train", "dev", "test")}


def read_product1m(path: str, split: str, root: str) -> list[tuple[Item, dict]]:
    out = []
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split("#####")
        if len(parts) < 2 or not parts[0].strip().isalnum() or not parts[1].strip():
            raise ConfigError(f"{path} line {n}: expected '<product id>#####<title>#####<url>#####<url>#####"
                              f"<instances joined by #;#>'")
        pid, title = parts[0].strip(), " ".join(parts[1].split())
        instances = [x.strip() for x in parts[4].split("#;#") if x.strip()] if len(parts) > 4 else []
        media = os.path.join(root, f"{pid}.jpg")
        side = {"media": media, "title": title, "entities": {"instance": list(dict.fromkeys(instances))}}
        out.append((Item(media, (title,), split=split, id=pid), side))
    return out


def _product1m(arg: str, split: str | None, options: Mapping[str, str]):
    opts = take_options("product1m", options, ("root",))
    folder = dataset_folder(arg, "Product1M")
    root = os.path.abspath(os.path.expanduser(opts.get("root", os.path.join(folder, "images"))))
    chosen = split_files(folder, PRODUCT1M_FILES, split, "Product1M")
    return [x for s, p in chosen for x in read_product1m(p, s, root)], [p for _, p in chosen]


@DATASETS.register("product1m", help="Product1M products: product1m:DIR[:train|dev|test][?root=IMAGES]")
def load_product1m(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
                   ) -> RetrievalDataset:
    pairs, files = _product1m(arg, split, options)
    return RetrievalDataset.from_items("product1m" + (f":{split}" if split else ""), [it for it, _ in pairs],
                                       caption_policy=caption_policy, source_files=files)


@register_side_text("product1m")
def product1m_side_text(arg: str, options: dict) -> list[dict]:
    split = options.pop("split", None)
    return [side for _, side in _product1m(arg, split, options)[0]]


# ------------------------------------------------------------------------------------------------- amazon


def _flat(v) -> list[str]:
    if isinstance(v, str):
        return [" ".join(v.split())] if v.strip() else []
    if isinstance(v, list):
        return [s for x in v for s in _flat(x)]
    return []


def _amazon_line(line: str, where: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        try:  # the 2014 release: Python literals ({'asin': ..., 'categories': [[...]]})
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ConfigError(f"{where}: neither JSON nor a Python dict literal (Amazon metadata has one product "
                              f"per line)") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected one product object per line, got {type(obj).__name__}")
    return obj


def read_amazon(path: str, root: str) -> list[tuple[Item, dict]]:
    out, seen = [], set()
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        p = _amazon_line(line, where)
        asin = p.get("parent_asin") or p.get("asin")
        if not isinstance(asin, str) or not asin.isalnum():
            raise ConfigError(f"{where}: needs 'asin' (or 'parent_asin'), an alphanumeric product id")
        title = " ".join(str(p.get("title") or "").split())
        if not title or asin in seen:
            continue
        seen.add(asin)
        cats = p.get("categories", p.get("category", []))
        paths = cats if cats and all(isinstance(c, list) for c in cats) else [cats]
        category = [c for c in (_flat(pth)[-1:] for pth in paths) for c in c]
        category = list(dict.fromkeys(_flat(p.get("main_category")) + category))
        brand = _flat(p.get("brand")) or _flat(p.get("store"))
        media = os.path.join(root, f"{asin}.jpg")
        side = {"media": media, "title": title, "description": _flat(p.get("description")),
                "features": _flat(p.get("features", p.get("feature"))),
                "entities": {k: v for k, v in (("brand", brand), ("category", category)) if v}}
        out.append((Item(media, (title,), id=asin), side))
    if not out:
        raise ConfigError(f"{path}: no product with a title")
    return out


def _amazon(arg: str, options: Mapping[str, str]):
    opts = take_options("amazon", options, ("root",))
    path = os.path.abspath(os.path.expanduser(arg))
    if not os.path.isfile(path):
        raise ConfigError(f"Amazon metadata file not found: {path} (give meta_<Category>.json or .jsonl)")
    root = os.path.abspath(os.path.expanduser(opts.get("root", os.path.join(os.path.dirname(path), "images"))))
    return read_amazon(path, root), path


@DATASETS.register("amazon", help="Amazon reviews product metadata: amazon:meta_<Category>.json[l][?root=IMAGES]")
def load_amazon(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
                ) -> RetrievalDataset:
    if split is not None:
        raise ConfigError("amazon: metadata files have no splits; drop the split")
    pairs, path = _amazon(arg, options)
    return RetrievalDataset.from_items("amazon", [it for it, _ in pairs], caption_policy=caption_policy,
                                       source_files=[path])


@register_side_text("amazon")
def amazon_side_text(arg: str, options: dict) -> list[dict]:
    options.pop("split", None)
    return [side for _, side in _amazon(arg, options)[0]]


__all__ = ["read_product1m", "read_amazon", "load_product1m", "load_amazon"]
