"""``vg:DIR`` — Visual Genome (Krishna et al., IJCV 2017) region descriptions, in the layout of its v1.2 release::

    DIR/region_descriptions.json   [{"id": 1, "regions": [{"region_id": 1382, "image_id": 1, "phrase": "...",
                                                          "x": 421, "y": 57, "width": 82, "height": 139}, ...]}, ...]
    DIR/image_data.json            (optional) [{"image_id": 1, "url": ".../VG_100K_2/1.jpg", ...}, ...]
    DIR/VG_100K/<id>.jpg, DIR/VG_100K_2/<id>.jpg

- One item per image with at least one non-empty phrase; its captions are its region phrases (whitespace
  collapsed, exact repeats dropped), by region id. The boxes are not used: this is image-level retrieval from region
  phrases (a phrase describes part of the image, so it is a partial caption).
- Image file: the folder named in ``image_data.json``'s URL (``VG_100K`` / ``VG_100K_2``) when that file is there,
  else whichever of the two folders holds ``<id>.jpg`` (one directory listing each); an image in neither is an
  error naming it. The ``root`` option points at another folder holding ``VG_100K*/``.
- Visual Genome has no official retrieval split: a split is refused (use ``?limit=N`` or a manifest).
- Order: images by id.
"""
from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlparse

from ..errors import ConfigError
from .base import DATASETS, Item, RetrievalDataset, load_json, require_file, take_options

FOLDERS = ("VG_100K", "VG_100K_2")


def _image_folders(data_path: str | None) -> dict[int, str]:
    """image id -> VG_100K* folder name from ``image_data.json``."""
    if data_path is None:
        return {}
    data = load_json(data_path)
    if not isinstance(data, list):
        raise ConfigError(f"{data_path}: expected a list of images (Visual Genome image_data.json)")
    out = {}
    for i, im in enumerate(data):
        try:
            iid = int(im.get("image_id", im.get("id")))
            parts = urlparse(str(im["url"])).path.strip("/").split("/")
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{data_path}: entry {i} needs an integer 'image_id' and a 'url'") from None
        if len(parts) >= 2:
            out[iid] = parts[-2]
    return out


@DATASETS.register("vg", help="Visual Genome region descriptions: vg:DIR (DIR/region_descriptions.json, VG_100K*/)")
def load_visual_genome(arg: str, *, split: str | None, caption_policy: str,
                       options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("vg", options, ("root",))
    if split is not None:
        raise ConfigError(f"vg: Visual Genome has no official retrieval split (got {split!r}); take a subset with "
                          "?limit=N or a manifest")
    folder = os.path.abspath(os.path.expanduser(arg))
    regions_p = require_file(os.path.join(folder, "region_descriptions.json"), "Visual Genome region_descriptions.json")
    data_p = os.path.join(folder, "image_data.json")
    data_p = data_p if os.path.isfile(data_p) else None
    root = os.path.abspath(os.path.expanduser(opts.get("root", folder)))
    data = load_json(regions_p)
    if not isinstance(data, list):
        raise ConfigError(f"{regions_p}: expected a list of {{'id', 'regions'}} objects (Visual Genome v1.2 layout)")
    folder_of = _image_folders(data_p)
    listed = {f: set(os.listdir(os.path.join(root, f))) if os.path.isdir(os.path.join(root, f)) else set()
              for f in FOLDERS}
    phrases: dict[int, list[tuple[int, str]]] = {}
    for i, entry in enumerate(data):
        try:
            iid = int(entry.get("id", entry.get("image_id")))
            regions = entry["regions"]
            if not isinstance(regions, list):
                raise TypeError
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{regions_p}: entry {i} needs an integer 'id' and a 'regions' list") from None
        for j, r in enumerate(regions):
            try:
                rid, text = int(r["region_id"]), r["phrase"]
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"{regions_p}: entry {i} region {j} needs an integer 'region_id' and a 'phrase'") from None
            text = " ".join(str(text).split()) if isinstance(text, str) else ""
            if text:
                phrases.setdefault(iid, []).append((rid, text))
    items = []
    for iid in sorted(phrases):
        name = f"{iid}.jpg"
        sub = folder_of.get(iid) or next((f for f in FOLDERS if name in listed[f]), None)
        if sub is None:
            raise ConfigError(f"Visual Genome image {name} is in neither {root}/VG_100K nor VG_100K_2 (download both "
                              "parts, or set ?root=DIR)")
        seen, caps = set(), []
        for _, t in sorted(phrases[iid]):
            if t not in seen:
                seen.add(t)
                caps.append(t)
        items.append(Item(media=os.path.join(root, sub, name), captions=tuple(caps), id=str(iid)))
    if not items:
        raise ConfigError(f"{regions_p}: no image with a non-empty region phrase")
    return RetrievalDataset.from_items(f"vg:{os.path.basename(folder)}", items, caption_policy=caption_policy,
                                       source_files=[p for p in (regions_p, data_p) if p])


__all__ = ["FOLDERS", "load_visual_genome"]
